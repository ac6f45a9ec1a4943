"""How a polyrec process runs Faust: its event loop, no terminal spinner, no Monitor sensor.

The worker (stream/app.py, run by polyrec_cli/worker.py) and the benchmark's no-op agent
(bench/noop_faust.py) both use these, so the framework ceiling is measured on the same set-up as
the worker.

* Event loop: Faust supports uvloop through ``mode.loop.use``. Faust schedules every record (a
  task and a few awaits per message), and on uvloop one worker drains 1.14-1.32 x the events/s it
  does on asyncio's default loop (docs/performance.md).
* Spinner: Faust's terminal spinner sets the root logger to DEBUG (to spin on every record)
  whenever the level is WARN or above; every aiokafka debug call then builds a LogRecord (~6% of
  a busy worker's time). A service has no terminal to spin on.
* Monitor: Faust's Monitor sensor does per-message bookkeeping for statistics polyrec does not
  use (it exports its own metrics).
"""

from __future__ import annotations

import importlib.util
import logging

import faust
import mode.loop

from stream.settings import EVENT_LOOPS

log = logging.getLogger(__name__)


def use_event_loop(name: str) -> str:
    """Install the event-loop policy ``name`` for this process; returns the loop actually in use.

    Call before any event loop is created. ``uvloop`` falls back to asyncio, with a warning,
    where the package is not installed (it does not exist on Windows).
    """
    if name not in EVENT_LOOPS:
        raise ValueError(f"POLYREC_EVENT_LOOP={name!r}: choose one of {', '.join(EVENT_LOOPS)}")
    if name == "uvloop":
        if importlib.util.find_spec("uvloop") is None:
            log.warning("uvloop is not installed; running on asyncio's default event loop")
            return "asyncio"
        mode.loop.use("uvloop")
    return name


def drop_monitor(app: faust.App) -> None:
    """Remove Faust's Monitor sensor once ``app`` has started."""

    @app.task
    async def drop_faust_monitor() -> None:
        if app.monitor in set(app.sensors):
            app.sensors.remove(app.monitor)


def quiet_worker(app: faust.App, loglevel: str) -> faust.Worker:
    """A Faust worker for ``app`` without the terminal spinner."""
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker
