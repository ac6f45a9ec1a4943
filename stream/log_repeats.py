"""Repeated library warnings, logged once per interval with a count instead of every time.

While the broker is unreachable, aiokafka's clients (Faust's consumer and producer, and the
worker's replicas) log every failed reconnect, metadata refresh and fetch: about 180 lines a
second on a 30 s cut (5,481 lines, measured by the broker-cut fault test on 2026-12-05). An
operator needs to know that it is happening and for how long, not each attempt.

>>> clock = iter([0.0, 1.0, 2.0, 12.0]).__next__
>>> f = Repeats(interval_s=10.0, clock=clock)
>>> records = [logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "Unable connect to node %s", (1,), None)
...            for _ in range(4)]
>>> [f.filter(r) for r in records]
[True, False, False, True]
>>> records[3].getMessage()
'Unable connect to node 1 (2 more like this in the last 12 s were not logged)'
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Repeats(logging.Filter):
    """Lets a (logger, level, message template) through at most once per ``interval_s``; the next one
    let through says how many were held back. Records below WARNING all pass."""

    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s, self.clock = interval_s, clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # key -> (last let through, held back)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval_s:
            self._seen[key] = (last, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held and isinstance(record.args, tuple):
            record.msg = f"{record.msg} (%d more like this in the last %.0f s were not logged)"
            record.args = (*record.args, held, now - last)
        return True


def limit_repeats(prefix: str = "aiokafka", interval_s: float = 10.0) -> Repeats:
    """Put one :class:`Repeats` on every logger whose name starts with ``prefix`` (the library's
    modules are imported by then: call after building the app)."""
    repeats = Repeats(interval_s)
    names = [prefix, *(n for n in logging.root.manager.loggerDict if n.startswith(prefix + "."))]
    for name in names:
        logging.getLogger(name).addFilter(repeats)
    return repeats
