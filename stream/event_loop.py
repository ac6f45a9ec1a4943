"""Which asyncio event loop a worker process runs on.

Faust supports uvloop through ``mode.loop.use``. Faust schedules every record (a task and a few
awaits per message), and on uvloop one worker drains about 1.2 x the events/s it does on
asyncio's default loop (docs/performance.md).
"""

from __future__ import annotations

import importlib.util
import logging

import mode.loop

log = logging.getLogger(__name__)

LOOPS = ("uvloop", "asyncio")


def use_event_loop(name: str) -> str:
    """Install the event-loop policy ``name`` for this process; returns the loop actually in use.

    Call before any event loop is created. ``uvloop`` falls back to asyncio, with a warning,
    where the package is not installed (it does not exist on Windows).
    """
    if name not in LOOPS:
        raise ValueError(f"POLYREC_EVENT_LOOP={name!r}: choose one of {', '.join(LOOPS)}")
    if name == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            log.warning("uvloop is not installed; running on asyncio's default event loop")
            return "asyncio"
        mode.loop.use("uvloop")
    return name
