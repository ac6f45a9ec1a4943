"""The worker's Faust app takes its configuration from polyrec's settings alone (pure: the app is
built, never started)."""

from __future__ import annotations

from stream.app import NEVER_BY_COUNT, Worker
from stream.settings import Settings


def test_the_workers_offsets_are_committed_by_time_alone(tmp_path):
    """Faust would also commit every 10,000 acknowledged events, more often than the interval under
    load, each commit writing the item contributions (docs/performance.md)."""
    worker = Worker(Settings(items_agent=False, data_dir=str(tmp_path), web_port=0, metrics_port=0,
                             commit_interval_s=2.5))
    assert worker.app.conf.broker_commit_interval == 2.5
    assert worker.app.conf.broker_commit_every == NEVER_BY_COUNT >= 2**62


def test_fausts_own_environment_variables_do_not_configure_the_worker(monkeypatch, tmp_path):
    """A Kubernetes Service named "web" sets WEB_PORT=tcp://...; Faust would read it (and the worker
    fail to start), and APP_WEB_TABLES_ENABLED would open the table views, user state without auth."""
    for name, value in {"WEB_PORT": "tcp://10.96.0.12:80", "APP_WEB_TABLES_ENABLED": "true",
                        "BROKER_COMMIT_INTERVAL": "99", "BROKER_COMMIT_EVERY": "10"}.items():
        monkeypatch.setenv(name, value)
    worker = Worker(Settings(items_agent=False, data_dir=str(tmp_path), web_port=6070, metrics_port=0))
    conf = worker.app.conf
    assert conf.web_port == 6070 and not conf.web_tables_enabled
    assert conf.broker_commit_interval == Settings().commit_interval_s and conf.broker_commit_every > 10


def test_a_partition_with_events_read_but_none_learned_for_a_minute_is_read_again(tmp_path, caplog):
    """The watchdog: only where the events replica is past the partition's next offset and no batch
    came for STUCK_S; it logs where the learning task waits, and reads the partition again."""
    import asyncio
    import logging
    import time

    from aiokafka import TopicPartition
    from faust.types import TP

    from stream.app import STUCK_S

    worker = Worker(Settings(items_agent=False, data_dir=str(tmp_path), web_port=0, metrics_port=0))
    topic = worker.settings.events_topic
    stuck, idle, busy = TP(topic, 0), TP(topic, 1), TP(topic, 2)
    reads = []

    async def read_from(tp, offset, why):
        reads.append((tp.partition, offset))

    async def main():
        worker._learning = {tp: asyncio.ensure_future(asyncio.sleep(3600)) for tp in (stuck, idle, busy)}
        worker.in_order.expect({stuck: 5, idle: 9, busy: 5})
        worker.event_replica._positions = {TopicPartition(topic, 0): 20, TopicPartition(topic, 1): 9,
                                           TopicPartition(topic, 2): 20}
        worker.replica.caught_up_once = worker.event_replica.caught_up_once = True
        now = time.monotonic()
        worker._progress = {stuck: now - STUCK_S - 1, idle: now - STUCK_S - 1, busy: now - 1}
        worker._read_from = read_from
        with caplog.at_level(logging.WARNING, logger="stream.app"):
            await worker.stuck_partitions()
            await worker.stuck_partitions()  # at most once a STUCK_S
        for task in worker._learning.values():
            task.cancel()

    asyncio.run(main())
    assert reads == [(0, 5)]
    assert "no batch learned for 61 s with 15 events behind" in caplog.text
