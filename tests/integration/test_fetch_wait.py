"""POLYREC_FETCH_MAX_WAIT_MS reaches the fetcher of the consumer Faust creates (Faust hard-codes
1500 ms; the patch sets a private attribute, so a Faust or aiokafka upgrade could silently undo it).
Against a real Tansu broker: the fetcher is built when the consumer starts."""

from __future__ import annotations

import asyncio

import faust
import pytest

from stream.faust_patches import install_fetch_max_wait


@pytest.mark.integration
def test_the_consumer_faust_creates_fetches_with_the_configured_wait(broker, monkeypatch):
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread  # restored after the test: the patch is process-wide
    monkeypatch.setattr(thread, "_create_worker_consumer", thread._create_worker_consumer)
    install_fetch_max_wait(7)

    async def fetch_wait() -> int:
        app = faust.App("fetch-wait-test", broker=f"kafka://{broker}")
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.start()
        try:
            return consumer._fetcher._fetch_max_wait_ms
        finally:
            await consumer.stop()

    assert asyncio.run(fetch_wait()) == 7
