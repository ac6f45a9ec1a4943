"""True end offsets of partitions, read from a Fetch response.

Tansu 0.6.0 answers ListOffsets(latest) with "first offset of the last batch + 1" instead of the
log end, so ``end_offsets()`` can be short by a whole batch; Fetch responses carry the right
high watermark. Faust's table recovery reads the changelog up to ``end_offsets()`` and would stop
early, silently losing the newest state (the probe in docs/architecture.md shows it). The Fetch
answer is also right on Apache Kafka, so the recovery reads its end offsets from here,
unconditionally (``stream/faust_patches.py: install_recovery_fix``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from stream.topics import admin_client


@contextlib.asynccontextmanager
async def probe_consumer(bootstrap: list[str] | str,
                          options: Mapping[str, Any] | None) -> AsyncIterator[AIOKafkaConsumer]:
    """A started consumer outside any group, committing nothing, stopped on exit."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                                **(options or {}))
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def fetch_end_offsets(bootstrap: list[str] | str, tps: Iterable[TopicPartition], timeout: float = 10.0,
                            options: Mapping[str, Any] | None = None) -> dict[TopicPartition, int]:
    """The high watermark of each partition, from a Fetch (one record read per partition);
    ``options``: the connection's security (``Settings.kafka_options``)."""
    tps = list(tps)
    if not tps:
        return {}
    async with probe_consumer(bootstrap, options) as consumer:
        return await high_watermarks(consumer, tps, timeout)


async def high_watermarks(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                          timeout: float = 10.0) -> dict[TopicPartition, int]:
    """:func:`fetch_end_offsets` with a started consumer outside any group, which this assigns ``tps``."""
    listed = await consumer.end_offsets(tps)  # a lower bound on Tansu, exact on Kafka
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, max((listed[tp] or 0) - 1, 0))
    result: dict[TopicPartition, int] = {}
    deadline = time.monotonic() + timeout
    while len(result) < len(tps):
        if time.monotonic() > deadline:
            missing = [f"{tp.topic}[{tp.partition}]" for tp in tps if tp not in result]
            raise TimeoutError(f"no fetch response for {', '.join(missing)} within {timeout:.0f} s")
        await consumer.getmany(*[tp for tp in tps if tp not in result], timeout_ms=200, max_records=1)
        for tp in tps:
            hw = consumer.highwater(tp)
            if hw is not None and tp not in result:
                result[tp] = max(hw, listed[tp] or 0)
    return result


async def fetch_start_offsets(bootstrap: list[str] | str, group: str, tps: Iterable[TopicPartition],
                              options: Mapping[str, Any] | None = None) -> dict[TopicPartition, int]:
    """Where consumer group ``group`` reads each partition from: its committed offset, or, for a
    partition it has never committed, the log's first offset (Faust's consumers reset to the
    earliest); ``options``: the connection's security (``Settings.kafka_options``)."""
    tps = list(tps)
    if not tps:
        return {}
    async with admin_client(bootstrap, options=options) as admin:
        found = await admin.list_consumer_group_offsets(group, partitions=tps)
    start = {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
    never = [tp for tp in tps if tp not in start]
    if never:
        async with probe_consumer(bootstrap, options) as consumer:
            start |= await consumer.beginning_offsets(never)
    return start


class InOrder:
    """Each partition's next offset to learn, so that no event is learned past one not delivered yet.

    Right after a rebalance, Faust can hand an agent a partition's events with a hole before them:
    records fetched before its seek to the committed offset are delivered after it, Faust takes the
    skipped offsets for a hole in the log (its commit may then cover them) and moves its read
    position past them, and the same records, fetched again, are dropped as already read (the
    reliability issue's fault tests lost 9–22 of 20,000 events that way; docs/architecture.md). A
    user's state keeps the highest offset applied to it, so an event learned after a later one of
    its user would count as a replay and be lost too. So a batch that would jump over offsets is not
    learned, and its partition is read again from the first missing one (:meth:`check`). While
    records from before the seek keep coming, each batch of them starts further on and is rewound
    again; a hole met again by a batch that starts where the rewound one did belongs to the log (a
    transaction marker, records past retention) and is learned past. A record delivered twice in one
    batch (a copy from before a rewind and one from after) is learned once.

    Only a hole learned past is the log's, and only then may a commit cover it: :meth:`check` keeps
    it for :meth:`take_holes` (the worker hands it to Faust's consumer: ``faust_patches.add_log_hole``).
    Faust's own fetch loop took every jump for one, and when a re-read batch ended inside such a
    false hole, its next commit covered the records after that batch before they were learned.
    """

    def __init__(self, max_rewinds: int = 1000) -> None:
        self.max_rewinds = max_rewinds
        self.next: dict[Any, int] = {}  # partition -> the offset its next event should have
        # partition -> (first missing offset, where the last batch rewound for it started, rewinds so far)
        self._rewound: dict[Any, tuple[int, int, int]] = {}
        self._holes: dict[Any, list[tuple[int, int]]] = {}  # partition -> the log's holes learned past

    def expect(self, offsets: Mapping[Any, int]) -> None:
        """Start over from these partitions' committed offsets (after a rebalance); forget the others."""
        self.next = dict(offsets)
        self._rewound = {}
        self._holes = {}

    def check(self, tp: Any, offsets: list[int]) -> tuple[list[int], int | None]:
        """For a batch of ``tp`` with ``offsets`` (in delivery order): the positions of the events to
        learn (ascending offsets, each once), and None; or no positions and the offset to read ``tp``
        again from before any of it may be learned."""
        expected = self.next.get(tp)
        before = offsets[0] - 1 if expected is None else expected - 1
        keep: list[int] = []
        holes: list[tuple[int, int]] = []
        for k, offset in enumerate(offsets):
            if keep and offset <= offsets[keep[-1]]:
                continue  # delivered twice, or out of order: the first copy is learned
            if offset > before + 1:  # offsets before + 1 .. offset - 1 were not delivered
                missing, started, rewinds = self._rewound.get(tp, (-1, -1, 0))
                same_hole = missing == before + 1
                if not (same_hole and (started == offsets[0] or rewinds >= self.max_rewinds)):
                    self._rewound[tp] = (before + 1, offsets[0], rewinds + 1 if same_hole else 1)
                    return [], offsets[keep[0]] if keep else expected
                holes.append((before + 1, offset - 1))
            keep.append(k)
            before = max(before, offset)
        if holes:
            self._holes.setdefault(tp, []).extend(holes)
        return keep, None

    def take_holes(self, tp: Any) -> list[tuple[int, int]]:
        """The holes of ``tp``'s log (first and last missing offset) that :meth:`check` let batches
        be learned past since the last call."""
        return self._holes.pop(tp, [])

    def learned(self, tp: Any, last: int) -> None:
        """A batch of ``tp`` up to offset ``last`` is learned."""
        self.next[tp] = max(self.next.get(tp, last + 1), last + 1)
