"""polyrec's event pipeline on a plain aiokafka consumer (``getmany``), without Faust's agent: a
measurement of the path past Faust's per-record machinery (docs/performance.md), not a worker.

The same code as a worker's from the batch on: ``WorkerModel``, ``EventPipeline`` (validate, learn,
top-K, user states to a changelog, Redis), ``process_or_dead_letter``, the item and events replicas,
the item contributions written before each offset commit. What it leaves out, and why it is not
a worker: a users *table* (states live in a dict, written to a changelog that nothing recovers
from), rebalances (no hand-over, no flush on revocation, no in-order check), the items agent, the
web endpoints, graceful handling of outages beyond what the pipeline itself does.

Run with a worker's environment (``KAFKA_BOOTSTRAP``, ``REDIS_URL``, ``POLYREC_APP_ID``,
``POLYREC_EVENTS_TOPIC``, ``POLYREC_METRICS_PORT``, ...): ``python bench/getmany_worker.py``. It
consumes in the group ``POLYREC_APP_ID`` until SIGTERM, then writes the pending item
contributions, commits and stops. Each ``getmany`` waits up to ``POLYREC_BATCH_WINDOW_S`` for up to
``POLYREC_BATCH_MAX`` events per partition it holds; each partition's share is processed in batches
of at most ``POLYREC_BATCH_MAX``, in order, the partitions concurrently (as Faust's actors would);
offsets are committed every ``POLYREC_COMMIT_INTERVAL_S``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy, as `polyrec worker` sets it

import asyncio  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import NewTopic  # noqa: E402

from stream import metrics  # noqa: E402
from stream.app import model_version, replicas, worker_model  # noqa: E402
from stream.dead_letters import process_or_dead_letter  # noqa: E402
from stream.faust_process import use_event_loop  # noqa: E402
from stream.pipeline import EventPipeline  # noqa: E402
from stream.recs import RecsPublisher, redis_client  # noqa: E402
from stream.replica import HandOverBarrier  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.topics import admin_client, ensure_topics, item_factors_topic, users_changelog_topic  # noqa: E402


@dataclass(frozen=True)
class Message:
    """What the pipeline reads of a Faust message."""

    topic: str
    partition: int
    offset: int
    timestamp: float  # epoch seconds, as Faust gives it
    key: bytes | None


@dataclass(frozen=True)
class Event:
    """What the pipeline reads of a Faust event."""

    value: bytes
    message: Message


async def _changelog(s: Settings) -> str:
    """Create the users changelog (Faust would) if it is missing; its name."""
    name = users_changelog_topic(s)
    async with admin_client(s.broker_list, options=s.kafka_options()) as admin:
        if name not in await admin.list_topics():
            await admin.create_topics([NewTopic(name, s.partitions, 1, topic_configs={"cleanup.policy": "compact"})])
    return name


async def main() -> None:
    s = Settings.from_env()
    await ensure_topics(s)
    changelog = await _changelog(s)
    model = worker_model(s)
    producer = AIOKafkaProducer(bootstrap_servers=s.broker_list, acks="all", **s.kafka_options())
    await producer.start()

    async def produce(topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                      headers: list | None) -> asyncio.Future:
        return await producer.send(topic, value, key=key, partition=partition, headers=headers)

    items, memory = replicas(s, model)
    states: dict[str, dict] = {}

    def store(_event: object, key: str, value: dict | None) -> None:
        if value is None:
            states.pop(key, None)
        else:
            states[key] = value

    pipeline = EventPipeline(
        model, s.weights, produce, states.get, store, lambda partition, offset: None,
        {"items": item_factors_topic(s), "users": changelog, "dlq": f"{s.events_topic}.dlq"},
        RecsPublisher(redis_client(s.redis_url, s.redis_timeout_s), s.redis_prefix, s.recs_ttl_s, s.stream_maxlen),
        model_version(model.config, model.cooccurrence, model.young),
        barrier=HandOverBarrier(items.wait_caught_up).before_batch, memory_ready=memory.wait_for)
    metrics.ITEMS.set_function(lambda: float(len(model.mf.items)))
    metrics.serve(s.metrics_port)
    tasks = [asyncio.ensure_future(items.run()), asyncio.ensure_future(memory.run())]
    await items.wait_caught_up()
    await memory.wait_caught_up(timeout=None)

    consumer = AIOKafkaConsumer(s.events_topic, bootstrap_servers=s.broker_list, group_id=s.app_id,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_wait_ms=s.fetch_max_wait_ms,
                                session_timeout_ms=int(1000 * s.session_timeout_s),
                                heartbeat_interval_ms=int(1000 * s.heartbeat_interval_s), **s.kafka_options())
    await consumer.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    next_offsets: dict[TopicPartition, int] = {}

    async def commit() -> None:
        """The item contributions first, then the offsets (as FlushOnCommit orders them)."""
        await pipeline.flush_items({tp.partition for tp in next_offsets})
        if next_offsets:
            await consumer.commit(dict(next_offsets))

    async def process(tp: TopicPartition, records: list) -> None:
        """A partition's fetched records, in batches of at most ``POLYREC_BATCH_MAX``, in order."""
        for start in range(0, len(records), s.batch_max):
            batch = records[start: start + s.batch_max]
            await process_or_dead_letter(pipeline, [
                Event(r.value, Message(r.topic, r.partition, r.offset, r.timestamp / 1000, r.key)) for r in batch])
            next_offsets[tp] = batch[-1].offset + 1

    try:
        committed = time.monotonic()
        while not stop.is_set():
            assigned = consumer.assignment()
            fetched = await consumer.getmany(timeout_ms=int(1000 * s.batch_window_s),
                                             max_records=s.batch_max * max(len(assigned), 1))
            await asyncio.gather(*(process(tp, records) for tp, records in fetched.items() if records))
            if time.monotonic() - committed >= s.commit_interval_s:
                await commit()
                committed = time.monotonic()
        await commit()
    finally:
        await consumer.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await producer.stop()


if __name__ == "__main__":
    use_event_loop(Settings.from_env().event_loop)
    asyncio.run(main())
