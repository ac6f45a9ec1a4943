"""Every change polyrec makes to Faust's and aiokafka's private internals, one section each, with
the reason and the upstream state. Nothing else in the code reaches a private name of a library
(ruff's SLF001 rule, on for every other module, enforces it): a Faust or aiokafka upgrade is checked
here, and against the tests named in each section.

1. ``install_recovery_fix``: table recovery reads changelogs up to the true end offsets. Tansu 0.6.0
   answers ListOffsets(latest) with "first offset of the last batch + 1", so Faust's recovery would
   stop a batch short and silently drop the newest user states; the Fetch high watermark is right on
   every broker (stream/offsets.py). Upstream: a Tansu bug, not reported there yet (no issue found,
   2026-12-03). Tests: tests/integration/test_offsets.py, ``test_user_state_survives_a_restart`` in
   tests/integration/test_stream_integration.py.
2. ``install_fetch_max_wait``: Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer; Tansu
   holds fetches that long when records trickle in, and the wait is part of every event's freshness
   (``POLYREC_FETCH_MAX_WAIT_MS``, docs/performance.md). Upstream: still hard-coded in
   faust-streaming 0.15.3 (no issue found, 2026-12-03). Test: tests/integration/test_fetch_wait.py.
3. ``install_flush_on_commit``: user states and item contributions are durable before Faust commits
   the offsets they cover. Faust commits through one path, which first publishes the messages "attached" to those
   offsets (``Attachments.publish_for_tp_offset``); :class:`FlushOnCommit` writes the partition's
   pending states and contributions there (``EventPipeline.flush``) and waits for the acknowledgements
   itself (Faust's own wait does not raise when a send fails), so a failed write stops the commit.
   Upstream: Faust has no public pre-commit hook. Test: tests/unit/stream/test_commits.py.
4. ``current_partition``: Faust's RocksDB store picks its per-partition database from the current
   event, which Faust sets only inside an agent's stream; the worker names a stand-in event of the
   partition while it writes a user's state (at a flush, or an erasure). Upstream: the same gap for
   periodic flushes was fixed in faust-streaming/faust#522. Test: ``test_user_state_survives_a_restart``
   (its RocksDB case) in tests/integration/test_stream_integration.py.
5. ``seek``: Faust's ``Consumer.seek`` calls aiokafka's ``seek`` from the agent's thread, while the
   aiokafka consumer lives in Faust's consumer thread; ``Fetcher.seek_to`` then deletes the
   partition's prefetched records while that thread iterates over them, and the fetcher crashes the
   worker (``KeyError`` in ``Fetcher.fetched_records``: 1 of 10 runs of the SIGKILL fault test,
   2026-12-06, after a restart rewound four partitions 89 times in a second). This seek runs in
   the consumer's thread and then resets Faust's read position as its ``seek`` does. Upstream: the
   same direct call in faust-streaming 0.15.3 (no issue found, 2026-12-06). Test: the rewinds of
   ``test_sigkill_while_busy_neither_loses_nor_doubles_an_event`` (make faults).
6. ``install_batch_delivery``: the ``events`` (and ``items``) topic's records go from Faust's fetch loop straight
   into the worker's per-partition buffers (stream/batches.py), not through the conductor, a
   channel queue and an agent's stream. Faust's loop (``Consumer._drain_messages``) awaits every
   record with ``Service.wait_first``, four new tasks per record: with the rest of that path it cost
   ~70 µs per event on a 2-core VM, more than polyrec's own work (docs/performance.md). This loop is
   Faust's, record for record (read offsets, gaps, the commit trigger, other topics' records to the
   conductor as before), except that an ``events`` or ``items`` record is appended, and waited on
   only when its partition's buffer is full; and that a jump in their offsets is not taken for a
   hole in the log (Faust's "gap", which its commits pass over): records fetched before a seek can
   come first, and a commit passing over them before they are learned would lose them at a crash.
   The worker adds a hole once it learns past it (``add_log_hole``, ``stream.offsets.InOrder``).
   Upstream: the same loop in faust-streaming 0.15.3 (2026-12-06). Tests:
   tests/unit/stream/test_batches.py, tests/unit/stream/test_in_order.py, and every stream
   integration and fault test (each runs the worker, whose events and items all come this way).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import faust
import faust.streams as faust_streams
from aiokafka import TopicPartition
from faust.app._attached import Attachments
from faust.transport import consumer as faust_consumer
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth
from faust.types import TP

from stream.offsets import fetch_end_offsets


# -- 1. table recovery up to the true end offsets ------------------------------------------------
def install_recovery_fix() -> None:
    """Make Faust's table recovery read changelogs up to the true end offsets."""
    from faust.tables import recovery

    if getattr(recovery.Recovery._build_highwaters, "_polyrec", False):
        return
    original = recovery.Recovery._build_highwaters

    async def build_highwaters(self, consumer, tps, destination, title):  # type: ignore[no-untyped-def]
        await original(self, consumer, tps, destination, title)
        if not tps:
            return
        bootstrap = [f"{u.host}:{u.port or 9092}" for u in self.app.conf.broker]
        options = credentials_to_aiokafka_auth(self.app.conf.broker_credentials)  # as Faust's own clients connect
        ends = await fetch_end_offsets(bootstrap, [TopicPartition(tp.topic, tp.partition) for tp in tps],
                                       options=options)
        for tp in tps:  # Faust keeps "last offset" (end - 1); destination is a Counter: assign, never update
            destination[tp] = ends[TopicPartition(tp.topic, tp.partition)] - 1
        self.log.info("%s changelog end offsets read from Fetch: %s", title,
                      {f"{tp.topic}[{tp.partition}]": destination[tp] for tp in tps})

    build_highwaters._polyrec = True  # type: ignore[attr-defined]
    recovery.Recovery._build_highwaters = build_highwaters


# -- 2. the consumer's fetch wait -----------------------------------------------------------------
def install_fetch_max_wait(ms: int) -> None:
    """Make every consumer Faust creates from now on use ``fetch_max_wait_ms=ms``."""
    from faust.transport.drivers import aiokafka as driver

    create = driver.AIOKafkaConsumerThread._create_worker_consumer
    original = getattr(create, "_polyrec_original", create)

    def create_worker_consumer(self, transport):  # type: ignore[no-untyped-def]
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = ms  # read when the consumer starts and builds its fetcher
        return consumer

    create_worker_consumer._polyrec_original = original  # type: ignore[attr-defined]
    driver.AIOKafkaConsumerThread._create_worker_consumer = create_worker_consumer


# -- 3. item contributions flushed before each offset commit ------------------------------------------
Flush = Callable[[Iterable[int]], Awaitable[None]]  # write these partitions' contributions, acknowledged


class FlushOnCommit(Attachments):
    """Faust's attachments, plus ``flush`` of the ``topic`` partition about to be committed."""

    def __init__(self, app: faust.App, topic: str, flush: Flush) -> None:
        super().__init__(app)
        self.topic, self.flush = topic, flush

    async def publish_for_tp_offset(self, tp: TP, offset: int) -> list[Awaitable[Any]]:
        if tp.topic == self.topic:
            await self.flush([tp.partition])
        return await super().publish_for_tp_offset(tp, offset)


def install_flush_on_commit(app: faust.App, topic: str, flush: Flush) -> None:
    """Route every offset commit of ``topic`` through ``flush`` first."""
    app._attachments = FlushOnCommit(app, topic, flush)


# -- 4. the current event of a table write ------------------------------------------------------------
class _PartitionEvent:
    """What Faust's RocksDB store reads of the current event: its message's partition."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


@contextlib.contextmanager
def current_partition(partition: int) -> Iterator[None]:
    """Within the block, Faust's current event is one of ``partition`` (the RocksDB store writes to
    that partition's database)."""
    event = _PartitionEvent(partition)  # held here: Faust keeps a weak reference
    token = faust_streams._current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        faust_streams._current_event.reset(token)


# -- 5. a seek from the consumer's own thread ------------------------------------------------------------
async def seek(app: faust.App, tp: TP, offset: int) -> None:
    """Read ``tp`` again from ``offset``: aiokafka's seek in the thread that owns the consumer, then
    Faust's read position (as ``faust.transport.consumer.Consumer.seek`` sets it)."""
    consumer = app.consumer
    thread = consumer._thread
    await thread.call_thread(thread.seek, tp, offset)
    consumer._read_offset[tp] = offset if offset else None


async def add_log_hole(app: faust.App, tp: TP, first: int, last: int) -> None:
    """Tell Faust's consumer that offsets ``first`` to ``last`` of ``tp`` are a hole in the log (a
    transaction marker, records past retention), so that its commits may pass over them; section 6
    leaves that to the worker for the batch topics (``stream.offsets.InOrder``)."""
    await app.consumer._add_gap(tp, first, last)


# -- 6. the events and items topics' records straight into the worker's buffers ----------------------
Put = Callable[[Any], Awaitable[Any] | None]  # PartitionBuffers.put
_BATCH_TOPICS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # app -> (topics, put)


def install_batch_delivery(app: faust.App, topics: set[str], put: Put) -> None:
    """Hand every record of ``topics`` that ``app``'s consumer fetches to ``put`` (in fetch order)."""
    _BATCH_TOPICS[app] = (frozenset(topics), put)
    if not getattr(faust_consumer.Consumer._drain_messages, "_polyrec", False):
        faust_consumer.Consumer._drain_messages = _drain_messages


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - Faust's fetch loop
    """``faust.transport.consumer.Consumer._drain_messages`` with section 6's two changes."""
    batch_topics, put = _BATCH_TOPICS.get(self.app, (frozenset(), None))
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    flag_consumer_fetching = faust_consumer.CONSUMER_FETCHING
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every, num_since_yield = 100, 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(flag_consumer_fetching)
            ait = getmany(timeout=1.0)
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        # a batch topic's hole is the worker's to confirm (add_log_hole)
                        if (gap > 1 and r_offset and acks_enabled_for(message.topic)
                                and message.topic not in batch_topics):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if message.topic in batch_topics:
                            full = put(message)
                            if full is not None:
                                await self.wait_first(full, self.suspend_flow.wait())
                        else:
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                        set_read_offset(tp, offset)
                unset_flag(flag_consumer_fetching)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            self.log.info("Broker stopped consumer, shutting down...")
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            self.log.info("Consumer shutting down for user cancel.")
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(flag_consumer_fetching)


_drain_messages._polyrec = True  # type: ignore[attr-defined]
