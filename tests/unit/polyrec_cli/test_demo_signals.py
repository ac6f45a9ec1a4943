"""The demo's SIGTERM handling in-process, with a real signal: an interrupt whose cancellation the
running coroutine swallows (as aiokafka's client ``close`` does) still ends the demo."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import pytest

from polyrec_cli.demo import _run, _stop_on_signals


def test_a_sigterm_whose_cancellation_is_swallowed_still_ends_the_run():
    finished = []

    async def swallowing() -> str:
        inner = asyncio.ensure_future(asyncio.sleep(10))
        os.kill(os.getpid(), signal.SIGTERM)  # handled at once: a SIGINT queued on this loop
        with contextlib.suppress(asyncio.CancelledError):  # aiokafka's close: eats the task's own cancel
            await inner
        inner.cancel()
        finished.append(True)
        return "done"

    before = signal.getsignal(signal.SIGTERM)
    with _stop_on_signals() as interrupted, asyncio.Runner() as runner:
        with pytest.raises(KeyboardInterrupt):
            _run(runner, swallowing(), interrupted)
    assert finished == [True], "the coroutine was not the one that swallowed the cancellation"
    assert signal.getsignal(signal.SIGTERM) is before, "the demo's handler outlived it"


def test_a_run_without_a_signal_returns_its_result():
    async def quick() -> int:
        return 7

    with _stop_on_signals() as interrupted, asyncio.Runner() as runner:
        assert _run(runner, quick(), interrupted) == 7
