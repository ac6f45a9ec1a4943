"""On a real broker, the item replica reads a topic from its start, keeps tailing it, and
``wait_caught_up`` means what it says."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import NewTopic

from polyrec_cli.harness import send_records
from stream.replica import ItemReplica
from stream.topics import admin_client
from stream.wire import ItemRecord
from tests.unit.stream.test_replica import encoded


@pytest.mark.integration
def test_the_replica_reads_its_topic_from_the_start_and_keeps_tailing_it(broker):
    topic = f"replica-{uuid.uuid4().hex[:8]}"
    applied: list[str] = []
    outcomes: list[str] = []

    def apply(rec: ItemRecord) -> bool:
        applied.append(rec.item_id)
        return True

    def items(lo: int, hi: int) -> list[tuple[bytes, bytes]]:
        return [(f"m{i}".encode(), encoded(4, item=f"m{i}")) for i in range(lo, hi)]

    async def main() -> None:
        async with admin_client(broker) as admin:
            await admin.create_topics([NewTopic(topic, 3, 1)])
        await send_records(broker, topic, items(0, 30) + [(b"m0", b"{not json")])  # written before the worker
        replica = ItemReplica([broker], topic, apply, lambda *header: False, outcomes.append,
                              fetch_max_wait_ms=50)
        task = asyncio.create_task(replica.run())
        try:
            await replica.wait_caught_up(timeout=30)
            assert replica.caught_up_once
            assert sorted(applied) == sorted(f"m{i}" for i in range(30)), "caught up means every record read"
            assert outcomes.count("invalid") == 1  # skipped, and the replica kept going
            await send_records(broker, topic, items(30, 40))  # written while it runs
            await replica.wait_caught_up(timeout=30)
            assert sorted(applied) == sorted(f"m{i}" for i in range(40))
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
