"""The worker's event-loop choice: uvloop when installed, asyncio otherwise, a clear error for typos."""

import subprocess
import sys

import pytest

from stream.faust_process import use_event_loop


def _loop_in_fresh_process(setup: str, name: str) -> str:
    code = (f"{setup}\nimport asyncio\nfrom stream.faust_process import use_event_loop\n"
            f"used = use_event_loop({name!r})\nloop = asyncio.new_event_loop()\n"
            "print(used, type(loop).__module__.split('.')[0])")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()


def test_unknown_loop_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="POLYREC_EVENT_LOOP='trio'"):
        use_event_loop("trio")


def test_uvloop_is_installed_as_the_policy() -> None:
    assert _loop_in_fresh_process("", "uvloop") == ["uvloop", "uvloop"]


def test_asyncio_keeps_the_default_loop() -> None:
    assert _loop_in_fresh_process("", "asyncio") == ["asyncio", "asyncio"]


def test_missing_uvloop_falls_back_to_asyncio() -> None:
    assert _loop_in_fresh_process("import sys; sys.modules['uvloop'] = None", "uvloop") == ["asyncio", "asyncio"]
