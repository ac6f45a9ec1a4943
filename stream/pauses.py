"""A worker that was paused for longer than its group session waits for the group before its next batch.

A process frozen by SIGSTOP, a VM migration or a long stall of its host sends no heartbeats: the
broker drops it from the group after ``POLYREC_SESSION_TIMEOUT_S`` and gives its partitions to
another worker, which learns on from the last committed offsets. When the frozen one runs again,
its event loop may start the next batch of its buffered records before its consumer has heard
that it is out (the heartbeat's answer takes a round trip), and learn what the successor has
already learned. User states and payloads carry their offsets and lose to the successor's
(stream/fencing.py, stream/recs.py), but its dead letters would be sent a second time.

So a worker that notices a pause of the event loop longer than the session, less one heartbeat
interval (the broker counts from the last heartbeat it got), starts no batch for ``settle_s``
afterwards: long enough for a heartbeat to be refused and the revocation to begin, which cancels
the waiting batch task (stream/app.py). A pause is noticed both by a ticker and by the batch that
asks, whichever runs first after it.

Until the settling time has passed with no revocation, or a revocation that began meanwhile has
ended in a new assignment, the worker is ``suspect``: the states it flushes then (its late writes,
if it was dropped) do not advance a RocksDB store's persisted offset, so that if the group hands it
the same partition back, Faust recovers it from before them and reads the successor's newer
states too (the fence keeps the newest; docs/architecture.md).

>>> now = [0.0]
>>> pauses = Pauses(limit_s=5.0, settle_s=3.0, clock=lambda: now[0])
>>> pauses.tick(); now[0] = 4.0; pauses.wait_s()  # paused 4 s: within the session
0.0
>>> pauses.tick(); now[0] = 12.0; pauses.wait_s()  # paused 8 s since the last tick
3.0
>>> now[0] = 14.0; pauses.wait_s()  # the rest of the settling time
1.0
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

TICK_S = 0.5  # how often the ticker runs: the shortest pause it can tell from a busy loop


class Pauses:
    """Tells how long a batch must wait after a pause of the event loop longer than ``limit_s``."""

    def __init__(self, limit_s: float, settle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self.settle_s, self.clock = limit_s, settle_s, clock
        self._last: float | None = None  # the last tick (None: none yet, the loop has not started)
        self._until = 0.0  # no batch starts before this (clock time)
        self.suspect = False  # since a long pause, the membership is not known to hold
        self._revoked = False  # a revocation began while suspect: the membership was lost

    def tick(self) -> None:
        """Note that the loop runs now; a gap since the last tick longer than the limit was a pause."""
        now = self.clock()
        paused = 0.0 if self._last is None else now - self._last
        if paused > self.limit_s:
            self._until = max(self._until, now + self.settle_s)
            self.suspect = True
            log.warning("the event loop was paused for %.1f s, longer than the group session: this worker may "
                        "have been dropped from the group; no batch starts for %.1f s", paused, self.settle_s)
        elif self.suspect and not self._revoked and now >= self._until:
            self.suspect = False  # no revocation came: the group kept this worker
        self._last = now

    def revoking(self) -> None:
        """A revocation begins: if suspect, the membership was lost, and stays so until :meth:`assigned`."""
        self._revoked = self.suspect

    def assigned(self) -> None:
        """The group has (re)assigned this worker its partitions: a member again."""
        self.suspect = self._revoked = False

    def wait_s(self) -> float:
        """Seconds the next batch waits (0: none)."""
        self.tick()
        return max(0.0, self._until - self.clock())

    async def settle(self) -> None:
        """Wait as long as :meth:`wait_s` says (a revocation cancels the waiting task)."""
        if delay := self.wait_s():
            await asyncio.sleep(delay)

    async def run(self) -> None:
        """Tick every ``TICK_S`` until cancelled."""
        while True:
            self.tick()
            await asyncio.sleep(TICK_S)
