"""The ``events`` topic's records, as Faust's fetch loop hands them over, buffered per partition and
taken in batches: the worker's batch path past Faust's per-record agent machinery.

Faust delivers each record to an agent through its conductor, a channel queue and a stream, and its
fetch loop waits on every record with four new tasks (``Service.wait_first``); that per-record path
cost more than all of polyrec's own work (docs/performance.md). The fetch loop now appends each
``events`` record to :class:`PartitionBuffers` (stream/faust_patches.py section 6) and the worker
takes whatever a partition has buffered, up to ``POLYREC_BATCH_MAX`` records, as its next batch:
batches grow with the load, and a record waits for no window.

What the agent path gave and this one keeps: offsets are committed only up to what is processed
(a batch's records are tracked by Faust's consumer when taken and acknowledged once processed, so
Faust's wait at a rebalance or stop waits for the batch in flight), no batch starts while Faust's
flow control is suspended (a rebalance, a stop), and the buffers are emptied when Faust clears its
queues (their records are fetched again from the committed offsets).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable
from typing import Any


class Delivered:
    """One ``events`` record in the shape the pipeline reads of a Faust event: ``value`` and
    ``message`` (Faust's message: topic, partition, offset, timestamp, key)."""

    __slots__ = ("message", "value", "__weakref__")  # weakref: Faust's current event (faust_patches 4)

    def __init__(self, message: Any) -> None:
        self.message = message
        self.value = message.value


class PartitionBuffers:
    """Per partition, the records fetched and not yet taken, at most ``limit`` each: a partition
    whose buffer is full makes the fetch loop wait (as a full agent queue did)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._records: dict[Any, deque] = {}  # TP -> Faust messages in fetch order
        self._filled: dict[Any, asyncio.Event] = {}  # TP -> set while it holds records
        self._drained: dict[Any, asyncio.Event] = {}  # TP -> set while it has room
        self._reread: dict[Any, int] = {}  # TP -> the first offset a clear dropped, to be read again

    def _events(self, tp: Any) -> tuple[asyncio.Event, asyncio.Event]:
        if tp not in self._filled:
            self._filled[tp], self._drained[tp] = asyncio.Event(), asyncio.Event()
            self._drained[tp].set()
        return self._filled[tp], self._drained[tp]

    def put(self, message: Any) -> Awaitable[Any] | None:
        """Buffer a record of its partition; None, or what to await before the next one (full)."""
        tp = message.tp
        records = self._records.get(tp)
        if records is None:
            records = self._records[tp] = deque()
        records.append(message)
        filled, drained = self._events(tp)
        filled.set()
        if len(records) < self.limit:
            return None
        drained.clear()
        return drained.wait()

    async def wait(self, tp: Any) -> None:
        """Until ``tp`` holds a record, or has records to read again (:meth:`reread`)."""
        await self._events(tp)[0].wait()

    def take(self, tp: Any, n: int) -> list[Any]:
        """Up to ``n`` of ``tp``'s oldest records (no wait)."""
        records = self._records.get(tp)
        if not records:
            return []
        batch = [records.popleft() for _ in range(min(n, len(records)))]
        self._settle(tp)
        return batch

    def drop(self, tp: Any) -> None:
        """Forget ``tp``'s buffered records (a rewind: they are read again)."""
        self._records.pop(tp, None)
        self._settle(tp)

    def clear(self) -> None:
        """Forget every buffered record: Faust's flow control clears its queues at a rebalance, a stop,
        and when its recovery resumes the flow. The consumer does not always fetch them again: after a
        recovery it seeks only partitions the group has committed, and its fetcher may already have
        read on past that seek (a restarted worker then waited for a next event before it learned
        the backlog: tests/integration/test_failpoints.py). So each partition's first dropped offset
        is kept for its learning task (:meth:`reread`)."""
        for tp, records in list(self._records.items()):
            if records:
                self._reread[tp] = min(records[0].offset, self._reread.get(tp, records[0].offset))
            self.drop(tp)
        for tp in self._reread:
            self._events(tp)[0].set()

    def reread(self, tp: Any) -> int | None:
        """The first offset of ``tp`` a clear dropped since the last call (None: none)."""
        offset = self._reread.pop(tp, None)
        self._settle(tp)
        return offset

    def _settle(self, tp: Any) -> None:
        filled, drained = self._events(tp)
        n = len(self._records.get(tp) or ())
        if not n and tp not in self._reread:
            filled.clear()
        if n < self.limit:
            drained.set()
