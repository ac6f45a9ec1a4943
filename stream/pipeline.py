"""One micro-batch of one ``events`` partition, start to finish.

The batch's user records are sent and acknowledged by the broker (and the recommendations written
to Redis, concurrently) before the agent returns; only then does Faust acknowledge the batch's
offsets. Item contributions are not sent per batch: ``flush_items`` writes one record per item
touched since the last flush, and Faust calls it (stream/faust_patches.py: FlushOnCommit) before it commits a
partition's offsets, so a popular item costs one record per commit interval instead of one per
batch. Their relative order does not matter: each user state and each item contribution carries
the offset it is complete to, so a replay applies exactly the side that was lost (see
stream/state.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from stream import metrics
from stream.records import PROCESSING_FAILED, Rejected, compact_json, parse_event, validate_all
from stream.recs import RecsPublisher, payload
from stream.state import BatchResult, ItemRecord, UserState, WorkerModel

log = logging.getLogger(__name__)

SEND_CHUNK = 100  # records encoded and queued between two yields to the event loop
MEMORY_WAIT_S = 5.0  # longest a batch waits for the co-occurrence memory to hold its events
# Key + value of a dead-letter copy at most: Faust's producer refuses requests over 1,000,000
# bytes, while a Kafka producer and broker accept records of up to 1 MiB.
DLQ_MAX_BYTES = 900_000
DLQ_MAX_KEY_BYTES = 64 * 1024
DLQ_DETAIL_BYTES = 500  # the polyrec-detail header at most (whole UTF-8 characters)
# Why a stored user state could not be used as is (stream/state.py, WorkerModel._load_users).
STATE_WARNINGS = {
    "moved": "its stored state is from another partition of the events topic: its producers do not "
             "all partition by the user id alike (docs/contracts.md); its events are all learned, but a "
             "replay may learn them twice",
    "resized": "its stored state has another factor dimension (POLYREC_DIM changed): its factors restart, "
               "its history and offset are kept",
}
EXIT_BATCH_FAILED = 70  # exit status when a batch and its dead letters failed (EX_SOFTWARE)

# (topic, key, value, partition, headers) -> a future that resolves on the broker's ack.
# In the worker this is Faust's own producer (``app.producer.send``), lifecycle and all; the
# Topic/Channel layer above it costs ~4x more per record and buffers changelog writes.
Produce = Callable[[str, bytes | None, bytes | None, int | None, list | None], Awaitable[Awaitable[Any]]]


def encode_json(obj: Any) -> bytes:
    return compact_json(obj).encode()


def dlq_headers(reason: str, detail: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead-letter record (its key and value are the original bytes)."""
    detail_bytes = detail.encode("utf-8", "replace")[:DLQ_DETAIL_BYTES].decode("utf-8", "ignore").encode()
    return [("polyrec-reason", reason.encode()), ("polyrec-detail", detail_bytes),
            ("polyrec-source-topic", topic.encode()), ("polyrec-source-partition", str(partition).encode()),
            ("polyrec-source-offset", str(offset).encode())]


async def delivered(sends: Sequence[Awaitable[Awaitable[Any]]]) -> list[Any]:
    """Await a group of sends (queued in order), then all their broker acknowledgements (returned,
    in order). Yields to the event loop every ``SEND_CHUNK`` sends, so that a large group is no stall."""
    futures = []
    for n, send in enumerate(sends, 1):
        futures.append(await send)
        if n % SEND_CHUNK == 0:
            await asyncio.sleep(0)
    return await asyncio.gather(*futures)


async def send_item_record(produce: Produce, topic: str, rec: ItemRecord) -> Awaitable[Any]:
    """Queue one record of the item-factor topic (key, JSON value, skip-without-decoding headers);
    return its acknowledgement. Encoding happens when awaited, inside ``delivered``'s chunks."""
    return await produce(topic, rec.key.encode(), encode_json(rec.to_json()), None, rec.headers())


def dlq_copy(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The key and value a dead-letter record carries: the originals, unless together they exceed
    ``DLQ_MAX_BYTES`` (then their heads, and a ``polyrec-truncated`` header with the original sizes)."""
    n_key, n_value = len(key or b""), len(value or b"")
    if n_key + n_value <= DLQ_MAX_BYTES:
        return key, value, []
    key = None if key is None else key[:DLQ_MAX_KEY_BYTES]
    value = None if value is None else value[:DLQ_MAX_BYTES - len(key or b"")]
    return key, value, [("polyrec-truncated", f"key {n_key} bytes, value {n_value} bytes".encode())]


async def dead_letter(produce: Produce, dlq_topic: str, rejected: Sequence[tuple[Any, Rejected]]) -> None:
    """Send rejected Faust events' original bytes to ``dlq_topic`` with the reason, and count them."""
    sends = []
    for ev, exc in rejected:
        msg = ev.message
        key, value, truncated = dlq_copy(msg.key, ev.value)
        sends.append(produce(dlq_topic, key, value, None, dlq_headers(
            exc.reason, exc.detail, msg.topic, msg.partition, msg.offset) + truncated))
        metrics.DLQ.labels(msg.topic, exc.reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
    await delivered(sends)


def exit_now(status: int) -> None:
    """End the process at once (no cleanup, no further commits), after flushing the logs."""
    logging.shutdown()
    os._exit(status)


class BatchSteps(Protocol):
    """A pipeline's three steps for one micro-batch of Faust events."""

    def validate(self, events: Sequence[Any]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Rejected]]]:
        """``(event, parsed)`` pairs to learn and ``(event, rejection)`` pairs to dead-letter."""

    async def learn(self, events: Sequence[Any], valid: list[tuple[Any, Any]]) -> None:
        """Learn the valid events of the batch ``events``."""

    async def dead_letter(self, rejected: Sequence[tuple[Any, Rejected]]) -> None:
        """Send rejected events to the pipeline's dead-letter topic, acknowledged."""


async def process_or_dead_letter(steps: BatchSteps, events: Sequence[Any], *, attempts: int = 5,
                                 backoff_s: float = 0.5, exit: Callable[[int], Any] = exit_now) -> None:
    """Validate ``events`` once, then dead-letter the invalid ones and learn the rest, retried with
    backoff; if every attempt fails, the valid events go to the dead-letter topic (reason
    ``processing_failed``) with any invalid ones not sent yet; if that fails too, the process exits.

    Faust acknowledges a ``take_events`` batch even when the agent raises (in the generator's
    ``finally``), and acknowledged offsets get committed: an agent that let the error out would
    lose the batch silently. Retrying is safe (offsets make a repeat apply only what is missing;
    invalid events already dead-lettered are not sent again); a batch that fails every time (a
    bug) is dead-lettered so that it neither blocks the partition nor vanishes; and exiting at
    once, like a SIGKILL, commits nothing more, so the next start replays the batch (a broker
    that refuses writes refuses the dead letters too).
    """
    first = events[0].message
    valid, unsent = steps.validate(events)
    for attempt in range(1, attempts + 1):
        try:
            if unsent:
                await steps.dead_letter(unsent)
                unsent = []
            return await steps.learn(events, valid)
        except Exception as exc:  # noqa: BLE001 - any failure is retried, then dead-lettered
            error = exc
            metrics.BATCH_FAILURES.labels(first.topic).inc()
            log.exception("a batch of %s[%d] from offset %d failed (attempt %d of %d)",
                          first.topic, first.partition, first.offset, attempt, attempts)
            if attempt < attempts:
                await asyncio.sleep(backoff_s * 2 ** (attempt - 1))
    detail = f"its micro-batch failed {attempts} times, last with {type(error).__name__}: {error}"
    try:
        await steps.dead_letter(unsent + [(ev, Rejected(PROCESSING_FAILED, detail)) for ev, _ in valid])
    except Exception:  # noqa: BLE001
        log.critical("cannot dead-letter the failed batch either: exiting without committing it, so that "
                     "the next start replays it", exc_info=True)
        exit(EXIT_BATCH_FAILED)


class EventPipeline:
    def __init__(self, model: WorkerModel, weights: dict[str, float], produce: Produce,
                 users_get: Callable[[str], Any], users_store: Callable[[Any, str, dict], None],
                 users_persisted: Callable[[int, int], None], topics: dict[str, str], publisher: RecsPublisher,
                 model_version: str, *, barrier: Callable[[int], Awaitable[None]],
                 memory_ready: Callable[[int, int, float], Awaitable[bool]], redis_retries: int = 5) -> None:
        """``topics`` names the ``items`` (item factors), ``users`` (changelog) and ``dlq`` topics;
        ``barrier(partition)`` is awaited before a batch is learned (``HandOverBarrier.before_batch``);
        ``memory_ready(partition, offset, timeout)`` before it is scored, until the co-occurrence memory
        holds the batch's events (``EventReplica.wait_for``; False: scored without them, counted);
        ``users_store(event, key, value)`` updates the local table store without I/O;
        ``users_persisted(partition, offset)`` is told the changelog offset up to which the local
        store holds what the broker acknowledged (a RocksDB store then recovers from there)."""
        self.model, self.weights, self.produce = model, weights, produce
        self.users_get, self.users_store, self.topics = users_get, users_store, topics
        self.users_persisted = users_persisted
        self.publisher, self.model_version, self.barrier = publisher, model_version, barrier
        self.memory_ready = memory_ready
        self.redis_retries = redis_retries
        self.loss = metrics.LossTracker()
        self.unusable_states: Counter[str] = Counter()  # STATE_WARNINGS key -> users so far
        self.positions: dict[int, int] = {}  # partition -> next offset to consume (for lag)
        self._flushing = asyncio.Lock()
        # one batch's top-K at a time, whatever the number of partitions: bounded memory and cores,
        # and never queued behind other work of the loop's default pool (e.g. a refit)
        self._top_k = ThreadPoolExecutor(max_workers=1, thread_name_prefix="polyrec-top-k")

    @staticmethod
    def validate(events: Sequence[Any]) -> tuple[list[tuple[Any, Any]], list[tuple[Any, Rejected]]]:
        """``(event, Event)`` pairs and ``(event, rejection)`` pairs."""
        return validate_all(events, lambda ev: parse_event(ev.value, ev.message.key))

    async def dead_letter(self, rejected: Sequence[tuple[Any, Rejected]]) -> None:
        """Dead-letter events; those rejected by validation count as ``invalid`` events, valid ones
        whose batch failed (``processing_failed``) by their type."""
        await dead_letter(self.produce, self.topics["dlq"], rejected)
        types = Counter(parse_event(ev.value, ev.message.key).event if exc.reason == PROCESSING_FAILED else "invalid"
                        for ev, exc in rejected)
        for kind, n in types.items():
            metrics.EVENTS.labels(kind, "dead_lettered").inc(n)

    async def learn(self, events: Sequence[Any], parsed: list[tuple[Any, Any]]) -> None:
        """Learn the valid events of a batch of one partition (``validate``), in offset order."""
        started = time.perf_counter()
        partition = events[0].message.partition
        if parsed:
            await self.barrier(partition)
            if not await self.memory_ready(partition, events[-1].message.offset, MEMORY_WAIT_S):
                metrics.MEMORY_BEHIND.inc()
            await self._learn(events[-1], [e for _, e in parsed],
                              np.array([ev.message.offset for ev, _ in parsed], np.int64),
                              np.array([ev.message.timestamp for ev, _ in parsed], float))
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
                                    np.array([e.ts_ms for e in events]), self._load_states(users))
        self._warn({"moved": result.moved, "resized": result.resized})
        # top-K is CPU-bound on a large catalogue (docs/operations.md): off the event loop
        recs = await asyncio.get_running_loop().run_in_executor(self._top_k, result.recs.run)
        await self._persist_and_publish(last, result.users, recs)
        self._count(events, result, produced)

    def _load_states(self, users: list[str]) -> dict[str, UserState | None]:
        """The table's state of each distinct user (None: none yet)."""
        states = {}
        for u in dict.fromkeys(users):
            raw = self.users_get(u)
            states[u] = None if raw is None else UserState.from_json(raw)
        return states

    async def _persist_and_publish(self, last: Any, states: dict[str, UserState],
                                   recs: list[tuple[str, list[str], list[float], float]]) -> None:
        """The changed user states to the changelog and the recommendations to Redis, together;
        then the states into the local store."""
        partition = last.message.partition
        values = {user: st.to_json() for user, st in states.items()}
        sends = [self.produce(self.topics["users"], encode_json(user), encode_json(value), partition, None)
                 for user, value in values.items()]
        payloads = [payload(u, items, scores, self.model_version, ts) for u, items, scores, ts in recs]
        acks, _ = await asyncio.gather(delivered(sends), self._publish(payloads))
        # only what the changelog holds goes into the local store: a RocksDB store recovers from
        # the offset it names, so a state that never reached the broker must not be in it
        for user, value in values.items():
            self.users_store(last, user, value)
        if acks:
            self.users_persisted(partition, max(ack.offset for ack in acks))

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

    async def flush_items(self, partitions: Iterable[int]) -> None:
        """Write the item contributions of ``partitions`` learned since the last flush and wait for
        the broker's acknowledgements. If that fails they stay pending, and this raises (so a commit
        waiting on it does not happen). One flush at a time (a commit and a revocation can overlap):
        an older record of an item must never land after a newer one, or compaction keeps it."""
        async with self._flushing:
            records = self.model.take_item_records(partitions)
            try:
                await delivered([send_item_record(self.produce, self.topics["items"], rec) for rec in records])
            except BaseException:
                self.model.keep_unsent(records)
                raise
            metrics.ITEM_RECORDS_WRITTEN.inc(len(records))

    async def _publish(self, payloads: list[dict]) -> None:
        for attempt in range(self.redis_retries):
            t0 = time.perf_counter()
            try:
                await self.publisher.publish(payloads)
                metrics.REDIS_SECONDS.observe(time.perf_counter() - t0)
                metrics.RECS.inc(len(payloads))
                return
            except Exception as exc:  # redis errors are many classes; all are retried the same way
                metrics.REDIS_ERRORS.inc()
                log.warning("redis write failed (attempt %d/%d): %s", attempt + 1, self.redis_retries, exc)
                await asyncio.sleep(min(0.1 * 2**attempt, 2.0))
        log.error("giving up on %d recommendation payloads after %d attempts; state is saved and the "
                  "next event of each user rewrites them", len(payloads), self.redis_retries)
