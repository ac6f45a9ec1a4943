"""Bad input and failed batches: never a crash, never a silent loss.

A record that fails validation goes to its topic's dead-letter topic (``<topic>.dlq``) with its
original bytes and headers that say why; a micro-batch whose learning keeps failing is retried,
then dead-lettered whole; if even that fails, the process exits without committing
(:func:`process_or_dead_letter`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from stream import metrics
from stream.records import PROCESSING_FAILED, Rejected
from stream.sends import Produce, delivered

log = logging.getLogger(__name__)

# Key + value of a dead-letter copy at most: Faust's producer refuses requests over 1,000,000
# bytes, while a Kafka producer and broker accept records of up to 1 MiB.
DLQ_MAX_BYTES = 900_000
DLQ_MAX_KEY_BYTES = 64 * 1024
DLQ_DETAIL_BYTES = 500  # the polyrec-detail header at most (whole UTF-8 characters)
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


async def dead_letter(produce: Produce, dlq_topic: str, rejected: Sequence[tuple[Any, Rejected]]) -> None:
    """Send rejected Faust events' original bytes to ``dlq_topic`` with the reason; each is counted
    and logged once the broker acknowledged it. Raises :class:`DeadLettersNotSent` with the others."""
    sends = []
    for ev, exc in rejected:
        msg = ev.message
        key, value, truncated = dlq_copy(msg.key, ev.value)
        sends.append(produce(dlq_topic, key, value, None, dlq_headers(
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
            if isinstance(exc, DeadLettersNotSent):  # the acknowledged ones are not sent again
                unsent = exc.unsent
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
