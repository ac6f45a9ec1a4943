"""What every worker reads whole: the item-factor topic and the events topic.

A :class:`TopicReplica` is a plain ``aiokafka`` consumer without a group: it is assigned every
partition of its topic, reads from the beginning and keeps tailing.

* :class:`ItemReplica` folds the compacted item-factor topic into the shared item vectors.
  ``wait_caught_up()`` returns once the replica has read every item record that existed when it
  was called; ``HandOverBarrier`` calls it before the first batch of each ``events`` partition
  after every rebalance, so contributions written by a partition's previous owner are known
  before they are extended.
* :class:`EventReplica` feeds every valid event of every partition to the co-occurrence memory,
  once each and in offset order per partition (the memory is rebuilt from the topic's start at
  every start), so that the memory is the same on every worker. ``wait_for(partition, offset)``
  lets a batch wait until the memory holds the batch's own events before its top-K is scored.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from stream.offsets import fetch_end_offsets
from stream.records import Forget, Rejected, parse_event
from stream.state import CatalogueFull
from stream.wire import ItemRecord

log = logging.getLogger(__name__)

APPLY_CHUNK = 200  # records applied between two yields to the event loop (a fetch holds up to 5,000)
OUTCOMES = ("applied", "stale", "refused", "invalid")  # what applying one item record can come to (``_apply``)


class TopicReplica:
    """Every partition of ``topic``, from the start and then tailing; a subclass folds the records
    in (:meth:`apply_all`)."""

    def __init__(self, bootstrap: list[str], topic: str, fetch_max_wait_ms: int = 500,
                 options: Mapping[str, Any] | None = None) -> None:
        """``options``: the connection's security (``Settings.kafka_options``)."""
        self.bootstrap, self.topic, self.fetch_max_wait_ms = bootstrap, topic, fetch_max_wait_ms
        self.options = dict(options or {})
        self._consumer: AIOKafkaConsumer | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()
        self._started = asyncio.Event()
        self.caught_up_once = False

    async def run(self) -> None:
        """Consume forever (until cancelled); each record is applied in the event loop thread."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False,
                                    group_id=None, auto_offset_reset="earliest",
                                    fetch_max_wait_ms=self.fetch_max_wait_ms, **self.options)
        await consumer.start()
        self._consumer = consumer
        try:
            parts = await self._partitions(consumer)
            tps = [TopicPartition(self.topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            self._positions = {tp: 0 for tp in tps}
            self._started.set()
            while True:
                batches = await consumer.getmany(timeout_ms=200, max_records=5000)
                await self.apply_all(r for records in batches.values() for r in records)
                for tp in self._positions:  # the fetch position also skips compaction gaps
                    self._positions[tp] = await consumer.position(tp)
                async with self._progress:
                    self._progress.notify_all()
        finally:
            self._started.set()
            await consumer.stop()

    async def apply_all(self, records: Iterable[ConsumerRecord]) -> None:
        """Fold one fetch's records in (in offset order per partition)."""
        raise NotImplementedError

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[int]:
        for _ in range(100):
            parts = consumer.partitions_for_topic(self.topic)
            if parts:
                return sorted(parts)
            await consumer.force_metadata_update()
            await asyncio.sleep(0.1)
        raise RuntimeError(f"topic {self.topic!r} has no partitions: was it created?")

    async def wait_caught_up(self, timeout: float | None = 120.0) -> None:
        """Return once every record that exists now has been applied."""
        await asyncio.wait_for(self._started.wait(), timeout)
        if self._consumer is None:
            raise RuntimeError(f"the replica of {self.topic!r} is not running")
        ends = await fetch_end_offsets(self.bootstrap, list(self._positions), options=self.options)

        def done() -> bool:
            return all(self._positions[tp] >= end for tp, end in ends.items())

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(done), timeout)
        self.caught_up_once = True

    def position(self, partition: int) -> int:
        """The offset of the next record of ``partition`` to apply (0 before the first fetch)."""
        return self._positions.get(TopicPartition(self.topic, partition), 0)

    async def wait_for(self, partition: int, offset: int, timeout: float) -> bool:
        """Wait until the record at ``offset`` of ``partition`` has been applied; False if that
        takes longer than ``timeout`` seconds."""
        tp = TopicPartition(self.topic, partition)

        def done() -> bool:
            return self._positions.get(tp, 0) > offset

        if done():  # the usual case: no lock, no task, no trip through the event loop
            return True
        try:
            async with self._progress:
                await asyncio.wait_for(self._progress.wait_for(done), timeout)
        except TimeoutError:
            return False
        return True


class ItemReplica(TopicReplica):
    """Every worker's copy of the shared item factors (the compacted item-factor topic)."""

    def __init__(self, bootstrap: list[str], topic: str, apply: Callable[[ItemRecord], bool],
                 known: Callable[[str, int, str, str], bool],
                 on_applied: Callable[[str], None] | None = None, fetch_max_wait_ms: int = 500,
                 options: Mapping[str, Any] | None = None) -> None:
        """``apply`` folds a record in; ``known(source, offset, item_id, writer)`` spots echoes of
        records this worker wrote itself (and late ones of an evicted owner) from their headers,
        before any decoding."""
        super().__init__(bootstrap, topic, fetch_max_wait_ms, options)
        self.apply, self.known, self.on_applied = apply, known, on_applied
        self.invalid = 0

    async def apply_all(self, records: Iterable[ConsumerRecord]) -> None:
        """Fold fetched records in, in order, yielding to the event loop every ``APPLY_CHUNK``
        records: a full fetch of new items takes about a second to apply, which would otherwise stall
        every agent, Redis write and health probe of the worker."""
        for n, r in enumerate(records, 1):
            outcome = self._apply(r)
            if self.on_applied:
                self.on_applied(outcome)
            if n % APPLY_CHUNK == 0:
                await asyncio.sleep(0)

    def _apply(self, r: ConsumerRecord) -> str:
        """Fold one record in: "applied", "stale" (an echo or an older offset), or "invalid" (a
        record this worker cannot use: logged and skipped, since the topic is read from the start
        on every restart and a crash would repeat forever)."""
        try:
            h = dict(r.headers)
            if "src" in h and self.known(h["src"].decode(), int(h["off"]), h["item"].decode(),
                                         h.get("w", b"").decode()):
                return "stale"
            return "applied" if self.apply(ItemRecord.from_json(json.loads(r.value))) else "stale"
        except CatalogueFull:  # counted, not logged: a flood of new ids would flood the log too
            return "refused"
        except Exception as exc:  # noqa: BLE001 - a tombstone, another model's dimension, bad JSON...
            self.invalid += 1
            if self.invalid <= 10 or self.invalid % 1000 == 0:
                log.error("skipping item-factor record %s[%d]@%d (%d skipped so far): %r",
                          r.topic, r.partition, r.offset, self.invalid, exc)
            return "invalid"


class EventReplica(TopicReplica):
    """Feeds every valid event to ``learn(users, items)`` (``WorkerModel.learn_memory``), and every
    erasure request, in its place, to ``forget(user)`` (``WorkerModel.forget_memory``).

    Records are validated exactly as the events agent validates them (``parse_event``); the
    invalid ones, which the agent dead-letters, are skipped. A fetch is learned in micro-batches of
    up to ``APPLY_CHUNK`` records, with a yield to the event loop between them.
    """

    def __init__(self, bootstrap: list[str], topic: str, learn: Callable[[list[str], list[str]], None],
                 forget: Callable[[str], None], on_applied: Callable[[int], None] | None = None,
                 fetch_max_wait_ms: int = 500, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(bootstrap, topic, fetch_max_wait_ms, options)
        self.learn, self.forget, self.on_applied = learn, forget, on_applied

    async def apply_all(self, records: Iterable[ConsumerRecord]) -> None:
        users: list[str] = []
        items: list[str] = []
        for n, r in enumerate(records, 1):
            try:
                event = parse_event(r.value, r.key)
            except Rejected:
                pass
            else:
                if isinstance(event, Forget):  # the events before it first
                    self._learn(users, items)
                    users, items = [], []
                    self.forget(event.user_id)
                else:
                    users.append(event.user_id)
                    items.append(event.item_id)
            if n % APPLY_CHUNK == 0:
                self._learn(users, items)
                users, items = [], []
                await asyncio.sleep(0)
        self._learn(users, items)

    def _learn(self, users: list[str], items: list[str]) -> None:
        if users:
            self.learn(users, items)
            if self.on_applied:
                self.on_applied(len(users))


class HandOverBarrier:
    """The first batch of each ``events`` partition after a rebalance waits for the replica.

    A partition's previous owner writes its pending item contributions while the partition is
    revoked, which is before anyone is assigned it. Waiting when an actor starts is not enough:
    Faust starts a worker's first actor at boot, before any assignment, and hands it the first
    partition it gets later. (Actors still wait at their start too: that catch-up, from the
    topic's start, may be long and must not hold a batch, which would hold up the next rebalance;
    the barrier's wait is then for the few records written since.)
    """

    def __init__(self, wait_caught_up: Callable[[], Awaitable[None]]) -> None:
        self.wait_caught_up = wait_caught_up
        self.rebalances = 0
        self._passed: dict[int, int] = {}  # partition -> the rebalance count when it last waited

    def rebalancing(self) -> None:
        """Call when partitions are revoked: a rebalance has begun."""
        self.rebalances += 1

    async def before_batch(self, partition: int) -> None:
        """Wait for the replica if ``partition`` has not done so since the last rebalance."""
        rebalances = self.rebalances
        if self._passed.get(partition) != rebalances:
            await self.wait_caught_up()
            self._passed[partition] = rebalances
