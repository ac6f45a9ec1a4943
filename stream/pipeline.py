"""One micro-batch of one ``events`` partition, start to finish.

A batch's recommendations are written to Redis before it is done; its users' states and its item
contributions are not sent per batch: ``flush`` writes one state per user and one record per item
touched since the last flush, waits for the broker's acknowledgements, and only then puts the
states into the local table store. Faust calls it (stream/faust_patches.py: FlushOnCommit) before
it commits a partition's offsets, and the worker at a hand-over, so an active user costs one
changelog record per commit interval instead of one per batch, and a popular item likewise.
Until then the partition's newest states are held here and read before the table's. A crash
loses them together with the offsets not yet committed, and the replay learns those events again;
their relative order does not matter: each user state and each item contribution carries the
offset it is complete to, so a replay applies exactly the side that was lost (see
stream/state.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby, islice
from typing import Any

import numpy as np

from stream import metrics
from stream.dead_letters import DeadLetters, DeadLettersNotSent
from stream.failpoints import Failpoints
from stream.fencing import Position, erasure_header, writer_header
from stream.records import (
    ITEM_CAPACITY,
    PROCESSING_FAILED,
    Forget,
    Rejected,
    parse_event,
    refuse_new_items,
    validate_all,
)
from stream.recs import RecsPublisher, payload
from stream.sends import Produce, delivered, encode_json, send_item_record
from stream.state import BatchResult, WorkerModel
from stream.wire import UserState

log = logging.getLogger(__name__)

HELD_MAX = 50_000  # payloads a worker holds while Redis fails (~1 KB each); the oldest go beyond it
HELD_CHUNK = 1_000  # held payloads written with each batch of their partition once Redis is back
HELD_RETRY_S = 2.0  # how often the worker tries to write held payloads without waiting for a batch
MEMORY_WAIT_S = 5.0  # longest a batch waits for the co-occurrence memory to hold its events
# Why a stored user state could not be used as is (stream/state.py, WorkerModel._load_users).
STATE_WARNINGS = {
    "moved": "its stored state is from another partition of the events topic: its producers do not "
             "all partition by the user id alike (docs/contracts.md); its events are all learned, but a "
             "replay may learn them twice",
    "resized": "its stored state has another factor dimension (POLYREC_DIM changed): its factors restart, "
               "its history and offset are kept",
    "invalid": "its stored state holds a non-finite or out-of-range number (a corrupt record): its factors "
               "restart, its history and offset are kept",
    "unreadable": "its stored state cannot be decoded (a corrupt record): it starts afresh, and its events "
                  "all count as new",
}

class EventPipeline:
    def __init__(self, model: WorkerModel, weights: dict[str, float], produce: Produce,
                 users_get: Callable[[str], Any], users_store: Callable[[int, str, dict | None], None],
                 users_persisted: Callable[[int, int], None], topics: dict[str, str], publisher: RecsPublisher,
                 model_version: str, *, barrier: Callable[[int], Awaitable[None]],
                 memory_ready: Callable[[int, int, float], Awaitable[bool]], redis_retries: int = 5,
                 failpoints: Failpoints | None = None, erasures: dict[tuple[int, str], Position] | None = None) -> None:
        """``topics`` names the ``items`` (item factors), ``users`` (changelog) and ``dlq`` topics;
        ``barrier(partition)`` is awaited before a batch is learned (``HandOverBarrier.before_batch``);
        ``memory_ready(partition, offset, timeout)`` before it is scored, until the co-occurrence memory
        holds the batch's events (``EventReplica.wait_for``; False: scored without them, counted);
        ``users_store(partition, key, value)`` updates the local table store without I/O (``None``: deletes);
        ``users_persisted(partition, offset)`` is told the changelog offset up to which the local
        store holds what the broker acknowledged (a RocksDB store then recovers from there);
        ``failpoints``: the fault tests' (stream/failpoints.py), none by default; ``erasures``: the users
        erased and where, by (partition, user), shared with the changelog's fence (``UserStatesFence``),
        which adds those it replays."""
        self.model, self.weights, self.produce = model, weights, produce
        self.users_get, self.users_store, self.topics = users_get, users_store, topics
        self.users_persisted = users_persisted
        self.publisher, self.model_version, self.barrier = publisher, model_version, barrier
        self.memory_ready = memory_ready
        self.redis_retries = redis_retries
        self.failpoints = failpoints or Failpoints()
        self.erasures = {} if erasures is None else erasures
        self.loss = metrics.LossTracker()
        self.unusable_states: Counter[str] = Counter()  # STATE_WARNINGS key -> users so far
        self.positions: dict[int, int] = {}  # partition -> next offset to consume (for lag)
        self.dead_letters = DeadLetters(produce, topics["dlq"])
        self._held: dict[int, dict[str, dict]] = {}  # partition -> user -> a payload Redis did not take
        # one writer of a partition's payloads at a time (its batches, ``write_held``, an erasure):
        # a user's older payload must never land after a newer one, nor after the user's erasure
        self._publishing: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._flushing = asyncio.Lock()  # one flush (or erasure's tombstone) at a time
        self._states: dict[int, dict[str, UserState]] = {}  # partition -> user -> newest state, not yet flushed
        # one batch's top-K at a time, whatever the number of partitions: bounded memory and cores,
        # and never queued behind other work of the loop's default pool (e.g. a refit)
        self._top_k = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyrec-top-k")

    def validate(self, events: Sequence[Any]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Rejected]]]:
        """``(event, Event)`` pairs and ``(event, rejection)`` pairs; events of new items past
        ``POLYREC_MAX_ITEMS`` are rejected (``item_capacity``)."""
        valid, rejected = validate_all(events, lambda ev: parse_event(ev.value, ev.message.key))
        return refuse_new_items(valid, rejected, lambda e: None if isinstance(e, Forget) else e.item_id,
                                self.model.admit, self.model.max_items)

    async def dead_letter(self, rejected: Sequence[tuple[Any, Rejected]]) -> None:
        """Dead-letter events (once each: :class:`stream.dead_letters.DeadLetters`); those rejected by
        validation count as ``invalid`` events, valid ones whose batch failed (``processing_failed``)
        by their type."""
        rejected = self.dead_letters.not_sent(rejected)
        try:
            await self.dead_letters.send(rejected)
        except DeadLettersNotSent as exc:
            self._count_dead_letters(rejected, exc.unsent)
            raise
        self._count_dead_letters(rejected, [])
        await self.failpoints.hit("dlq.after_send")

    @staticmethod
    def _count_dead_letters(rejected: Sequence[tuple[Any, Rejected]], unsent: list[tuple[Any, Rejected]]) -> None:
        """Count the dead letters that were sent (all of ``rejected`` but ``unsent``) by event type."""
        left = {id(ev) for ev, _ in unsent}
        types = Counter(parse_event(ev.value, ev.message.key).event if exc.reason in (PROCESSING_FAILED, ITEM_CAPACITY)
                        else "invalid"
                        for ev, exc in rejected if id(ev) not in left)
        for kind, n in types.items():
            metrics.EVENTS.labels(kind, "dead_lettered").inc(n)

    async def learn(self, events: Sequence[Any], parsed: list[tuple[Any, Any]]) -> None:
        """Learn the valid events of a batch of one partition (``validate``), in offset order: the
        runs of events between erasure requests each as one step, each request in its place."""
        started = time.perf_counter()
        partition = events[0].message.partition
        if parsed:
            await self.failpoints.hit("batch.before_learn")
            await self.barrier(partition)
            if not await self.memory_ready(partition, events[-1].message.offset, MEMORY_WAIT_S):
                metrics.MEMORY_BEHIND.inc()
            for forget, run in groupby(parsed, key=lambda pair: isinstance(pair[1], Forget)):
                run = list(run)
                if forget:
                    for ev, request in run:
                        await self._forget(ev, request.user_id)
                    continue
                await self._learn(run[-1][0], [e for _, e in run],
                                  np.array([ev.message.offset for ev, _ in run], np.int64),
                                  np.array([ev.message.timestamp for ev, _ in run], float))
        self.positions[partition] = events[-1].message.offset + 1
        metrics.BATCH_SIZE.observe(len(events))
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    async def _learn(self, last: Any, events: list, offsets: np.ndarray, produced: np.ndarray) -> None:
        """Learn the valid events, then score, persist, publish and count them, one step each;
        ``last`` is the batch's last Faust event (its partition's); ``produced`` holds their Kafka
        timestamps (epoch seconds)."""
        users = [e.user_id for e in events]
        weights = np.array([self.weights[e.event] for e in events], np.float32)
        result = self.model.process(last.message.partition, users, [e.item_id for e in events], weights, offsets,
                                    np.array([e.ts_ms for e in events]),
                                    self._load_states(users, last.message.partition))
        self._warn({"moved": result.moved, "resized": result.resized, "invalid": result.invalid})
        await self.failpoints.hit("batch.in_topk")
        # top-K is CPU-bound on a large catalogue (docs/operations.md): off the event loop
        recs = await asyncio.get_running_loop().run_in_executor(self._top_k, result.recs.run)
        await self._hold_and_publish(last, result.users, recs, dict(zip(users, offsets.tolist())))
        await self.failpoints.hit("batch.after_publish")
        self._count(events, result, produced)

    async def _forget(self, ev: Any, user: str) -> None:
        """Erase a user (an erasure request at ``ev``): a tombstone on the changelog (acknowledged; a
        header holds the request's position, stream/fencing.py), then the local store, the model's
        rows, any payload held for Redis, and the Redis key (an erasure marker refuses their older
        payloads: stream/recs.py). The Redis stream's entries are left to ``polyrec forget``, which
        scans the stream once it sees the request committed; so is a Redis key this attempt could
        not delete."""
        partition = ev.message.partition
        async with self._flushing:  # no flush of a state of theirs may land after the tombstone
            self._states.get(partition, {}).pop(user, None)
            await self._tombstones(partition, {user: (partition, ev.message.offset)})
            self.erasures[(partition, user)] = (partition, ev.message.offset)
        held = self.model.forget_user(user)
        async with self._publishing[partition]:
            self._held.get(partition, {}).pop(user, None)
            try:
                await self.publisher.forget(user, partition, ev.message.offset)
            except Exception as exc:  # noqa: BLE001 - the command deletes it again, and says if it could not
                log.warning("user %r erased, but its Redis key was not deleted: %s", user, exc)
        metrics.USERS_FORGOTTEN.inc()
        log.info("user %r erased (partition %d, offset %d; this worker held a row of theirs: %s)",
                 user, partition, ev.message.offset, held)

    async def write_again(self, partition: int, late: dict[str, Position | None]) -> int:
        """Make this worker's newest record of each of ``late``'s users (user -> the position of a late
        record of theirs that landed after it on ``partition`` of the changelog; None: unknown) the
        last one again, so that compaction keeps it (stream/fencing.py): their state held or stored,
        where newer than the late record, is flushed again; an erased user with no state since gets
        their tombstone again, where the late record is from before the erasure. Returns how many."""
        async with self._flushing:
            held = self._states.setdefault(partition, {})
            again, gone = 0, {}
            for user, at in late.items():
                mine = held.get(user) or _decoded_state(self.users_get(user))
                if mine is not None:
                    if _older(at, (mine.partition, mine.offset)):
                        held[user] = mine
                        again += 1
                elif (erased := self.erasures.get((partition, user))) and _older(at, erased):
                    gone[user] = erased
            if gone:
                await self._tombstones(partition, gone)
        if again:
            await self.flush([partition])
        if again or gone:
            metrics.WRITTEN_AGAIN.inc(again + len(gone))
            log.warning("users changelog: wrote again %d states and %d erased users' tombstones of partition %d: "
                        "a late record of theirs (an owner dropped from the group) followed them", again, len(gone),
                        partition)
        return again + len(gone)

    async def _tombstones(self, partition: int, users: dict[str, Position]) -> None:
        """Tombstones of ``users`` (each with their erasure's position in a header) on the changelog,
        acknowledged, and out of the local store; under ``_flushing``."""
        keys = [encode_json(u) for u in users]
        writer = writer_header(self.model.writer)
        acks = await delivered([self.produce(self.topics["users"], key, None, partition, [erasure_header(*at), writer])
                                for key, at in zip(keys, users.values())])
        _count_states([(key, b"") for key in keys])
        for user in users:
            self.users_store(partition, user, None)
        self.users_persisted(partition, max(ack.offset for ack in acks))

    def _load_states(self, users: list[str], partition: int) -> dict[str, UserState | None]:
        """Each distinct user's newest state: held since the last flush, else the table's (None: none
        yet, or one that cannot be decoded)."""
        held = self._states.get(partition, {})
        states: dict[str, UserState | None] = {}
        unreadable = []
        for u in dict.fromkeys(users):
            if u in held:
                states[u] = held[u]
                continue
            raw = self.users_get(u)
            states[u] = _decoded_state(raw)
            if raw is not None and states[u] is None:
                unreadable.append(u)
        self._warn({"unreadable": unreadable})
        return states

    def held_state(self, user: str) -> UserState | None:
        """A user's newest state learned since the last flush (None: none held)."""
        return next((held[user] for held in self._states.values() if user in held), None)

    async def _hold_and_publish(self, last: Any, states: dict[str, UserState],
                                recs: list[tuple[str, list[str], list[float], float]],
                                last_offset: dict[str, int]) -> None:
        """Hold the changed user states for the next flush, and write the recommendations to Redis.
        ``last_offset``: each user's last event in the batch."""
        partition = last.message.partition
        self._states.setdefault(partition, {}).update(states)
        await self._publish(partition, [payload(u, items, scores, self.model_version, ts, partition, last_offset[u])
                                        for u, items, scores, ts in recs])

    def _count(self, events: list, result: BatchResult, produced: np.ndarray) -> None:
        """The batch's metrics: freshness, events by type and outcome, the training loss."""
        # an event its user's state already held (a replay after a rebalance, restart or crash) was
        # delivered before: not a freshness sample
        for delay in np.maximum(time.time() - produced[result.user_new], 0.0):  # Kafka timestamps, in s
            metrics.FRESHNESS.observe(delay)
        outcomes = Counter((e.event, "duplicate" if dup else "applied")
                           for e, dup in zip(events, result.duplicate.tolist()))
        for (kind, outcome), n in outcomes.items():
            metrics.EVENTS.labels(kind, outcome).inc(n)
        if result.applied_user or result.applied_item:
            self.loss.update(result.loss)

    def _warn(self, users: dict[str, list[str]]) -> None:
        """Log users whose stored state was not usable as is: the first ten of each kind, then
        every thousandth."""
        for kind, names in users.items():
            for user in names:
                self.unusable_states[kind] += 1
                n = self.unusable_states[kind]
                if n <= 10 or n % 1000 == 0:
                    log.warning("user %r (%d such so far): %s", user, n, STATE_WARNINGS[kind])

    async def flush(self, partitions: Iterable[int]) -> None:
        """Write the user states and item contributions of ``partitions`` learned since the last
        flush and wait for the broker's acknowledgements; then put the states into the local table
        store (a RocksDB store recovers from the offset it names, so a state that never reached the
        broker must not be in it; and a partition this worker keeps through a rebalance is not
        recovered again: its store must hold them). Until then the states stay held, where batches
        read them. If that fails they stay pending, and this raises (so a commit waiting on it does
        not happen). One flush at a time (a commit and a revocation can overlap): an older record of
        a user or an item must never land after a newer one, or compaction keeps it."""
        partitions = list(partitions)
        async with self._flushing:
            # copies: the held states stay where batches read them until the table has them
            states = {p: dict(self._states[p]) for p in partitions if self._states.get(p)}
            values = {p: {user: st.to_json() for user, st in held.items()} for p, held in states.items()}
            records = {p: [(encode_json(user), encode_json(value)) for user, value in held.items()]
                       for p, held in values.items()}
            items = self.model.take_item_records(partitions)
            writer = [writer_header(self.model.writer)]
            sends = [self.produce(self.topics["users"], key, value, p, writer) for p, recs in records.items()
                     for key, value in recs]
            try:
                acks = await delivered(sends + [send_item_record(self.produce, self.topics["items"], rec)
                                                for rec in items])
            except BaseException:
                self.model.keep_unsent(items)
                raise
            metrics.ITEM_RECORDS_WRITTEN.inc(len(items))
            if acks:
                await self.failpoints.hit("flush.after_send")
            n = 0
            for p, held in values.items():
                _count_states(records[p])
                for user, value in held.items():
                    self.users_store(p, user, value)
                self.users_persisted(p, max(ack.offset for ack in acks[n:n + len(held)]))
                n += len(held)
                newer = self._states.get(p, {})
                for user, st in states[p].items():  # a state learned during the flush stays held
                    if newer.get(user) is st:
                        del newer[user]

    async def _publish(self, partition: int, payloads: list[dict]) -> None:
        """Write a batch's payloads, with up to ``HELD_CHUNK`` of those its partition holds from
        failed writes (oldest first; a user's newer payload supersedes a held one). If every attempt
        fails, all of them are held for the partition's next batch: a Redis outage delays
        recommendations, it does not lose them. A partition's payloads have one writer at a time (its
        batches run one at a time; ``write_held`` and erasures take the same lock), so a held payload
        never lands after a newer one of its user."""
        async with self._publishing[partition]:
            await self._publish_locked(partition, payloads)

    async def _publish_locked(self, partition: int, payloads: list[dict]) -> None:
        held = self._held.setdefault(partition, {})
        for p in payloads:
            held.pop(p["user_id"], None)
        payloads = payloads + [held.pop(u) for u in list(islice(held, HELD_CHUNK))]
        for attempt in range(self.redis_retries):
            t0 = time.perf_counter()
            try:
                stale = await self.publisher.publish(payloads)
            except Exception as exc:  # redis errors are many classes; all are retried the same way
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write failed (attempt %d/%d): %s", attempt + 1, self.redis_retries, exc)
                if attempt + 1 < self.redis_retries:
                    await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
            else:  # written: what follows must never make a written batch count as failed
                metrics.REDIS_SECONDS.observe(time.perf_counter() - t0)
                self._count_written(payloads, stale)
                return
        for p in payloads:  # the older held ones first, then the batch's own: the oldest leave first
            held.setdefault(p["user_id"], p)
        dropped = max(0, self._held_count() - HELD_MAX)  # all in this partition's: the others were within it
        for _ in range(dropped):
            held.pop(next(iter(held)))
        metrics.RECS_DROPPED.inc(dropped)
        metrics.RECS_HELD.set(self._held_count())
        log.error("redis write failed %d times: holding %d recommendation payloads of partition %d for its "
                  "next batch (%d held in all, %d dropped beyond %d); the users' state is saved",
                  self.redis_retries, len(held), partition, self._held_count(), dropped, HELD_MAX)

    async def write_held(self) -> int:
        """Write the payloads held from failed writes, a chunk at a time, without waiting for their
        partition's next batch (a partition whose events stopped during a Redis outage would keep
        them until its next event). One attempt per chunk, and none after a failure: Redis is still
        down, the next call tries again (the worker calls it every ``HELD_RETRY_S``). Returns how many
        it wrote. It writes those of partitions given away too: they may reach Redis after the next
        owner's first write of the same user, and the write's offset check (stream/recs.py) then keeps
        the newer payload."""
        written = 0
        for partition in [p for p, held in self._held.items() if held]:
            async with self._publishing[partition]:
                held = self._held.get(partition, {})
                while held:
                    chunk = [held[u] for u in islice(held, HELD_CHUNK)]
                    try:
                        stale = await self.publisher.publish(chunk)
                    except Exception as exc:  # noqa: BLE001 - Redis still down: held until the next try
                        metrics.REDIS_ERRORS.inc()
                        log.debug("held payloads not written yet: %s", exc)
                        return written
                    for p in chunk:  # under the lock nothing else wrote or replaced them
                        del held[p["user_id"]]
                    self._count_written(chunk, stale)
                    written += len(chunk)
                    log.info("redis is back: wrote %d held recommendation payloads of partition %d (%d left)",
                             len(chunk), partition, len(held))
        return written

    def _count_written(self, payloads: list[dict], stale: list[dict]) -> None:
        """Count a write: the payloads Redis took and their slots, and those it refused as older than
        the one it held (``stale``: a late write of an owner dropped from the group, or of this one)."""
        if stale:
            refused = {id(p) for p in stale}
            payloads = [p for p in payloads if id(p) not in refused]
            metrics.RECS_STALE.inc(len(stale))
        metrics.RECS.inc(len(payloads))
        self._count_slots(payloads)
        metrics.RECS_HELD.set(self._held_count())

    def _count_slots(self, payloads: list[dict]) -> None:
        """The slots of payloads Redis took, by item language and age (held ones count once written)."""
        slots = self.model.exposure([x["item_id"] for p in payloads for x in p["items"]])
        for (lang, age), n in slots.items():
            metrics.SLOTS.labels(lang, age).inc(n)

    def _held_count(self) -> int:
        return sum(map(len, self._held.values()))

    def revoked(self, partitions: Iterable[int]) -> None:
        """Partitions given away: their lag positions and unflushed user states go (their next owner
        replays what a failed flush left unsent). Their payloads held from a Redis outage stay, and
        ``write_held`` writes them once Redis answers: a user whose last event came during the outage
        has no newer event for the next owner to write. Redis's offset check refuses one the next
        owner has already superseded (stream/recs.py)."""
        for p in partitions:
            self.positions.pop(p, None)
            self._states.pop(p, None)


def _decoded_state(raw: Any) -> UserState | None:
    """A stored state (None: none, or not a state: ``UserState.from_json`` says why; failing would
    fail the batch)."""
    try:
        return None if raw is None else UserState.from_json(raw)
    except ValueError:
        return None


def _older(late: Position | None, mine: Position) -> bool:
    """Whether a late record at ``late`` (None: unknown) is older than this worker's at ``mine``: so
    in the same partition; one of another partition is not comparable, and loses to this worker's."""
    return late is None or late[0] != mine[0] or late[1] < mine[1]


def _count_states(records: list[tuple[bytes, bytes]]) -> None:
    """Count user-state records the changelog acknowledged (key, value: empty for a tombstone)."""
    metrics.USER_STATES_WRITTEN.inc(len(records))
    metrics.USER_STATE_BYTES.inc(sum(len(k) + len(v) for k, v in records))
