"""How long the worker's consumer lets the broker hold a fetch that has no new records.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its consumer. Apache Kafka answers a fetch as
soon as ``fetch_min_bytes`` (1) are there, so the wait costs nothing under load; Tansu 0.6.0
holds fetches much longer when records trickle in (a probe: a plain aiokafka consumer at 100
records/s saw p50 138 ms from send to receipt with 500 ms, 10.5 ms with 10 ms). This wait is
part of every event's freshness, so polyrec sets it (``POLYREC_FETCH_MAX_WAIT_MS``).
"""

from __future__ import annotations


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
