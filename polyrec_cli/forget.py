"""``polyrec forget USER_ID``: erase a user from everything polyrec keeps (docs/operations.md, "Erasing a user").

1. An erasure request (``{"user_id", "event": "forget", "ts"}``) goes to the ``events`` topic keyed by
   the user, so it lands in their partition after their earlier events.
2. The worker that owns the partition, on reaching it, writes a tombstone for the user to the users
   changelog, drops them from its store and memory (factors, history, id) and deletes their Redis key;
   every worker's event replica drops their last events from its co-occurrence memory.
3. This command waits until the consumer group's committed offset passes the request (the owner has
   applied it), then marks the erasure in Redis and deletes the Redis key itself (again, in case the
   owner could not) and every entry of the user on the Redis stream, and reports what it removed.
   Safe to repeat.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

from stream.records import FORGET, Rejected, compact_json, parse_event
from stream.recs import queue_erasure, stream_key
from stream.settings import Settings

STREAM_PAGE = 1000  # stream entries read per round trip while looking for the user's


@dataclass(frozen=True)
class ForgetReport:
    """What one ``polyrec forget`` did."""

    user_id: str
    partition: int  # where the erasure request landed on the events topic
    offset: int
    applied: bool  # the consumer group committed past the request: its owner erased the user
    recs_keys: int  # Redis keys deleted by this command (0 if the worker had deleted it already)
    stream_entries: int  # entries of the user deleted from the Redis stream

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def request_record(user_id: str) -> tuple[bytes, bytes]:
    """The erasure request's key and value, checked as the worker will check it (a bad id raises)."""
    key, value = user_id.encode("utf-8"), compact_json({"user_id": user_id, "event": FORGET,
                                                        "ts": int(time.time() * 1000)}).encode()
    try:
        parse_event(value, key)
    except Rejected as exc:
        raise ValueError(f"not a user id polyrec accepts: {exc}") from None
    return key, value


async def send_request(settings: Settings, user_id: str) -> tuple[int, int]:
    """Send the erasure request; its (partition, offset) once the broker has it."""
    from aiokafka import AIOKafkaProducer

    key, value = request_record(user_id)
    producer = AIOKafkaProducer(bootstrap_servers=settings.broker_list, acks="all", **settings.kafka_options())
    await producer.start()
    try:
        meta = await producer.send_and_wait(settings.events_topic, value, key=key)
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def wait_applied(settings: Settings, partition: int, offset: int, timeout: float) -> bool:
    """True once the workers' consumer group has committed past ``offset`` of ``partition``
    (committed offsets are the next record to read); False after ``timeout`` seconds."""
    from aiokafka import TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    tp = TopicPartition(settings.events_topic, partition)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_list, **settings.kafka_options())
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        while True:
            committed = (await admin.list_consumer_group_offsets(settings.app_id, partitions=[tp])).get(tp)
            if committed is not None and committed.offset > offset:
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.5)
    finally:
        await admin.close()


def erase_from_redis(redis: Any, settings: Settings, user_id: str, partition: int, offset: int) -> tuple[int, int]:
    """Mark the erasure (the request at ``partition``, ``offset``: stream/recs.py), delete the user's
    recommendation key and their entries on the Redis stream (a synchronous ``redis.Redis``); how
    many keys and entries there were."""
    prefix = settings.redis_prefix
    with redis.pipeline(transaction=False) as pipe:
        queue_erasure(pipe, prefix, user_id, partition, offset, settings.recs_ttl_s)
        keys = int(pipe.execute()[1])
    stream, wanted, entries, start = stream_key(prefix), user_id.encode("utf-8"), 0, "-"
    while page := redis.xrange(stream, min=start, max="+", count=STREAM_PAGE):
        mine = [entry_id for entry_id, fields in page if fields.get(b"user_id") == wanted]
        if mine:
            entries += int(redis.xdel(stream, *mine))
        last = page[-1][0].decode()
        start = "(" + last  # exclusive: the next page starts after the last entry read
        if len(page) < STREAM_PAGE:
            break
    return keys, entries


def forget(settings: Settings, user_id: str, timeout: float = 60.0) -> ForgetReport:
    """Request the erasure, wait for it to be applied (at most ``timeout`` s), then clean Redis."""
    import redis

    partition, offset = asyncio.run(send_request(settings, user_id))
    applied = asyncio.run(wait_applied(settings, partition, offset, timeout))
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=max(settings.redis_timeout_s, 5.0))
    try:
        keys, entries = erase_from_redis(client, settings, user_id, partition, offset)
    finally:
        client.close()
    return ForgetReport(user_id, partition, offset, applied, keys, entries)
