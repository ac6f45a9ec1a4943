"""Bad input and failed batches: never a crash, never a silent loss.

A record that fails validation goes to its topic's dead-letter topic (``<topic>.dlq``) with its
original bytes and headers that say why; a micro-batch that fails waits out an infrastructure
outage, and one that keeps failing otherwise is bisected until the records that fail alone are
found and dead-lettered; if even that fails, the process exits without committing
(:func:`process_or_dead_letter`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from stream import metrics
from stream.offsets import high_watermarks, probe_consumer
from stream.records import PROCESSING_FAILED, Rejected
from stream.sends import Produce, delivered

log = logging.getLogger(__name__)

# Key + value of a dead-letter copy at most: Faust's producer refuses requests over 1,000,000
# bytes, while a Kafka producer and broker accept records of up to 1 MiB.
DLQ_MAX_BYTES = 900_000
DLQ_MAX_KEY_BYTES = 64 * 1024
DLQ_DETAIL_BYTES = 500  # the polyrec-detail header at most (whole UTF-8 characters)
DLQ_READ_BACK_MAX = 100_000  # dead letters a worker reads back per partition at an assignment, at most
EXIT_BATCH_FAILED = 70  # exit status when a batch and its dead letters failed (EX_SOFTWARE)


def dlq_headers(reason: str, detail: str, topic: str, partition: int, offset: int) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead-letter record (its key and value are the original bytes)."""
    detail_bytes = detail.encode("utf-8", "replace")[:DLQ_DETAIL_BYTES].decode("utf-8", "ignore").encode()
    return [("polyrec-reason", reason.encode()), ("polyrec-detail", detail_bytes),
            ("polyrec-source-topic", topic.encode()), ("polyrec-source-partition", str(partition).encode()),
            ("polyrec-source-offset", str(offset).encode())]


def dlq_copy(key: bytes | None, value: bytes | None) -> tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]:
    """The key and value a dead-letter record carries: the originals, unless together they exceed
    ``DLQ_MAX_BYTES`` (then their heads, and a ``polyrec-truncated`` header with the original sizes)."""
    n_key, n_value = len(key or b""), len(value or b"")
    if n_key + n_value <= DLQ_MAX_BYTES:
        return key, value, []
    key = None if key is None else key[:DLQ_MAX_KEY_BYTES]
    value = None if value is None else value[:DLQ_MAX_BYTES - len(key or b"")]
    return key, value, [("polyrec-truncated", f"key {n_key} bytes, value {n_value} bytes".encode())]


class DeadLettersNotSent(Exception):
    """Some records of a group of dead letters were not acknowledged: ``unsent`` holds those (the
    others were sent, counted and logged), so that a retry sends only them."""

    def __init__(self, unsent: list[tuple[Any, Rejected]], cause: BaseException) -> None:
        super().__init__(f"{len(unsent)} dead letters not acknowledged, first: {cause!r}")
        self.unsent = unsent
        self.__cause__ = cause  # an unreachable broker makes it the infrastructure's (is_infrastructure)


async def dead_letter(produce: Produce, dlq_topic: str, rejected: Sequence[tuple[Any, Rejected]],
                      partitions: int | None = None) -> None:
    """Send rejected Faust events' original bytes to ``dlq_topic`` with the reason; each is counted
    and logged once the broker acknowledged it. Raises :class:`DeadLettersNotSent` with the others.
    ``partitions``: the dead-letter topic's partition count, to send each record to its source
    partition's (modulo it; :func:`dead_lettered_since` reads them back); None: by key."""
    sends = []
    for ev, exc in rejected:
        msg = ev.message
        key, value, truncated = dlq_copy(msg.key, ev.value)
        sends.append(produce(dlq_topic, key, value, None if partitions is None else msg.partition % partitions,
                             dlq_headers(
            exc.reason, exc.detail, msg.topic, msg.partition, msg.offset) + truncated))
    unsent, cause = [], None
    for (ev, exc), ack in zip(rejected, await delivered(sends, return_exceptions=True), strict=True):
        if isinstance(ack, BaseException):
            unsent.append((ev, exc))
            cause = cause or ack
            continue
        msg = ev.message
        metrics.DLQ.labels(msg.topic, exc.reason).inc()
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, exc)
    if unsent:
        raise DeadLettersNotSent(unsent, cause)


class DeadLetters:
    """A topic's dead letters, each sent to its source partition's partition of the dead-letter topic,
    and once only: at every assignment the worker reads back what is there past each assigned
    partition's committed offset (:func:`dead_lettered_since`, :meth:`resume`), which a killed
    predecessor sent and its replay must not send again."""

    def __init__(self, produce: Produce, topic: str) -> None:
        self.produce, self.topic = produce, topic
        self.partitions: int | None = None  # the dead-letter topic's (None: not read yet; sent by key)
        self._sent: dict[int, set[int]] = {}  # source partition -> offsets dead-lettered, not committed

    def resume(self, partitions: int, sent: dict[int, set[int]]) -> None:
        """At an assignment: the topic's partition count, and the source offsets from each assigned
        partition's committed offset on that are dead-lettered already."""
        self.partitions, self._sent = partitions or None, sent

    def not_sent(self, rejected: Sequence[tuple[Any, Rejected]]) -> list[tuple[Any, Rejected]]:
        """Those of ``rejected`` that were not dead-lettered before a restart or rebalance."""
        fresh = [(ev, exc) for ev, exc in rejected if ev.message.offset not in self._sent.get(ev.message.partition, ())]
        if len(fresh) < len(rejected):
            first = rejected[0][0].message
            log.info("%d records of %s[%d] were dead-lettered before a restart or rebalance: not sent again",
                     len(rejected) - len(fresh), first.topic, first.partition)
        return fresh

    async def send(self, rejected: Sequence[tuple[Any, Rejected]]) -> None:
        """:func:`dead_letter`, each record to its source partition's partition."""
        await dead_letter(self.produce, self.topic, rejected, self.partitions)


async def dead_lettered_since(bootstrap: list[str], dlq_topic: str, starts: Mapping[int, int],
                              options: Mapping[str, Any] | None = None, chunk: int = 256,
                              most: int = DLQ_READ_BACK_MAX) -> tuple[int, dict[int, set[int]]]:
    """The dead-letter topic's partition count, and for each source partition ``p`` of ``starts``
    the source offsets from ``starts[p]`` on that are dead-lettered already: a worker that dead-
    lettered them was killed before its offsets were committed, and its successor replays them.

    Each source partition's dead letters are in one partition of the topic (:func:`dead_letter`), in
    source-offset order, so that partition is read backwards from its end, a growing chunk at a
    time, until a dead letter of ``p`` from before ``starts[p]`` (or at most ``most`` records)."""
    found: dict[int, set[int]] = {p: set() for p in starts}
    async with probe_consumer(bootstrap, options) as consumer:
        await consumer.topics()  # metadata: the topic's partitions
        count = len(consumer.partitions_for_topic(dlq_topic) or ())
        if not count or not starts:
            return count, found
        tps = {q: TopicPartition(dlq_topic, q) for q in {p % count for p in starts}}
        first = await consumer.beginning_offsets(list(tps.values()))
        listed = await consumer.end_offsets(list(tps.values()))  # equal to the start only when empty
        filled = [tp for tp in tps.values() if listed[tp] > first[tp]]
        ends = {tp: first[tp] for tp in tps.values()} | (  # the exact end, where it matters
            await high_watermarks(consumer, filled) if filled else {})
        for q, tp in tps.items():
            pending = {p for p in starts if p % count == q}
            hi, step = ends[tp], chunk
            while pending and hi > first[tp] and ends[tp] - hi < most:
                lo = max(first[tp], hi - step)
                for source, offset in await _sources(consumer, tp, lo, hi):
                    if source in pending and offset < starts[source]:
                        pending.discard(source)  # read back to where its replay starts
                    elif source in found and offset >= starts[source]:
                        found[source].add(offset)
                hi, step = lo, 2 * step
            if pending and hi > first[tp]:
                log.warning("%s[%d]: read back %d dead letters without reaching partitions %s' committed "
                            "offsets: a replay may dead-letter some records again", dlq_topic, q, most,
                            sorted(pending))
    return count, found


async def _sources(consumer: Any, tp: TopicPartition, lo: int, hi: int, timeout: float = 30.0) -> list[tuple[int, int]]:
    """The (source partition, source offset) of the dead letters at offsets ``lo`` to ``hi - 1``."""
    consumer.assign([tp])
    consumer.seek(tp, lo)
    out: list[tuple[int, int]] = []
    deadline = time.monotonic() + timeout
    while await consumer.position(tp) < hi:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tp.topic}[{tp.partition}]: offsets {lo}-{hi - 1} not read within {timeout:.0f} s")
        for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
            headers = dict(record.headers)
            if record.offset < hi and "polyrec-source-offset" in headers:
                out.append((int(headers["polyrec-source-partition"]), int(headers["polyrec-source-offset"])))
    return out


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


INFRASTRUCTURE = (OSError, KafkaError, RedisError)  # connection errors and timeouts are OSErrors


def is_infrastructure(exc: BaseException) -> bool:
    """True for an error of the broker, Redis or the network (also when wrapped, e.g. by Faust's
    ``ProducerSendError``): it passes, so its batch waits for it instead of being dead-lettered."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, INFRASTRUCTURE):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


@dataclass
class Stalls:
    """Batches now waiting for the broker or Redis to come back: the worker is not ready while any is."""

    waiting: int = 0


async def process_or_dead_letter(steps: BatchSteps, events: Sequence[Any], *, attempts: int = 5,
                                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, stalls: Stalls | None = None,
                                 exit: Callable[[int], Any] = exit_now) -> None:
    """Validate ``events`` once, dead-letter the invalid ones, learn the rest; never hand a failed
    batch back to Faust, which would acknowledge it unprocessed.

    * An **infrastructure** error (:func:`is_infrastructure`: the broker, Redis, the network) is
      retried with backoff (up to ``max_backoff_s`` apart) for as long as it lasts, the batch
      counted in ``stalls`` meanwhile: an outage delays events, it does not dead-letter them.
    * Any other error is retried ``attempts`` times; then the batch is **bisected**: each half is
      learned on its own, and a half that fails is halved again, so that only the records that fail
      alone go to the dead-letter topic (reason ``processing_failed``) and the rest are learned.

    Retrying is safe: offsets make a repeat apply only what is missing, and invalid events already
    dead-lettered are not sent again. If the dead letters themselves fail with an error that is not
    the infrastructure's (a bug), the process exits at once, like a SIGKILL, committing nothing
    more, so that the next start replays the batch.
    """
    first = events[0].message
    stalls = stalls or Stalls()
    retry = partial(_until_done, topic=first.topic, where=f"{first.topic}[{first.partition}]", backoff_s=backoff_s,
                    max_backoff_s=max_backoff_s, stalls=stalls)
    valid, invalid = steps.validate(events)
    if invalid:  # before learning; what a bug keeps from being sent is tried once more below
        await retry(lambda: _dead_letter(steps, invalid), attempts=attempts)
    rejected = invalid + await _learn_or_bisect(steps, valid, retry, attempts, events)
    if rejected and await retry(lambda: _dead_letter(steps, rejected), attempts=1) is not None:
        log.critical("cannot dead-letter the failed records either: exiting without committing the batch, so "
                     "that the next start replays it")
        exit(EXIT_BATCH_FAILED)


async def _learn_or_bisect(steps: BatchSteps, valid: list[tuple[Any, Any]],
                           retry: Callable[..., Awaitable[BaseException | None]], attempts: int,
                           events: Sequence[Any] | None = None) -> list[tuple[Any, Rejected]]:
    """Learn ``valid`` (of ``events``; by default their own events); return the records that failed
    alone, rejected as ``processing_failed``."""
    if not valid:
        return []
    batch = [ev for ev, _ in valid] if events is None else events
    error = await retry(lambda: steps.learn(batch, valid), attempts=attempts)
    if error is None:
        return []
    if len(valid) == 1:
        return _rejected(valid, error, attempts)
    half = len(valid) // 2
    log.warning("bisecting %d failing records of %s[%d] from offset %d", len(valid), batch[0].message.topic,
                batch[0].message.partition, valid[0][0].message.offset)
    return [*await _learn_or_bisect(steps, valid[:half], retry, 1),
            *await _learn_or_bisect(steps, valid[half:], retry, 1)]


def _rejected(valid: list[tuple[Any, Any]], error: BaseException, attempts: int) -> list[tuple[Any, Rejected]]:
    detail = f"it failed {attempts} time{'s' * (attempts > 1)} on its own, last with {type(error).__name__}: {error}"
    return [(ev, Rejected(PROCESSING_FAILED, detail)) for ev, _ in valid]


async def _dead_letter(steps: BatchSteps, rejected: list[tuple[Any, Rejected]]) -> None:
    """``steps.dead_letter``, leaving in ``rejected`` only what the broker has not acknowledged."""
    try:
        await steps.dead_letter(list(rejected))
    except DeadLettersNotSent as exc:  # the acknowledged ones are not sent again
        rejected[:] = exc.unsent
        raise
    rejected.clear()


async def _until_done(step: Callable[[], Awaitable[None]], *, topic: str, where: str, attempts: int,
                      backoff_s: float, max_backoff_s: float, stalls: Stalls) -> BaseException | None:
    """Run ``step`` until it succeeds (None), retrying infrastructure errors for as long as they
    last; any other error after ``attempts`` failures is returned. Cancelled while it waits (the
    partition revoked, or the worker stopping, during an outage), it stops: the batch stays
    unacknowledged (``stream.app.Worker._learn_batch``) and the partition's next owner replays it."""
    failures, stalled = 0, False
    try:
        while True:
            try:
                await step()
                return None
            except Exception as exc:  # noqa: BLE001 - every failure is counted, logged and decided on
                infrastructure = is_infrastructure(exc)
                failures += 1
                metrics.BATCH_FAILURES.labels(topic).inc()
                log.exception("a batch step of %s failed (attempt %d%s)", where, failures,
                              ", the infrastructure's: retried until it passes" if infrastructure
                              else f" of {attempts}")
                if not infrastructure and failures >= attempts:
                    return exc
                if infrastructure and not stalled:
                    stalled = True
                    stalls.waiting += 1
                await asyncio.sleep(min(backoff_s * 2 ** (failures - 1), max_backoff_s))
    finally:
        if stalled:
            stalls.waiting -= 1
