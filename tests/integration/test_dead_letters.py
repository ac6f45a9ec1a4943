"""Dead letters read back at an assignment (``stream.dead_letters.dead_lettered_since``), against the
real broker: what a killed worker dead-lettered past its last commit, so that its successor's replay
does not send it again (the SIGKILL at ``dlq.after_send`` in tests/integration/test_failpoints.py
dead-lettered 11 records twice before)."""

import asyncio
from types import SimpleNamespace

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import NewTopic

from stream.dead_letters import dead_letter, dead_lettered_since
from stream.records import Rejected
from stream.topics import admin_client

pytestmark = pytest.mark.integration
TOPIC = "dead-letters-probe.dlq"


async def _scenario(bootstrap: str) -> tuple:
    async with admin_client(bootstrap) as admin:
        await admin.create_topics([NewTopic(TOPIC, 2, 1)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()

    async def produce(topic, key, value, partition, headers):
        return await producer.send(topic, value, key=key, partition=partition, headers=headers)

    def bad(partition: int, offset: int):
        message = SimpleNamespace(topic="events", partition=partition, offset=offset, key=b"u")
        return SimpleNamespace(value=b"{", message=message), Rejected("malformed_json", "not JSON")

    # source partitions 0..3 into the 2 partitions of the topic: 0 and 2 share one, 1 and 3 the other
    for offsets in (range(0, 40, 3), range(40, 90, 5)):
        await dead_letter(produce, TOPIC, [bad(p, o) for o in offsets for p in range(4)], partitions=2)
    await producer.stop()
    starts = {0: 50, 1: 0, 2: 1_000, 3: 39}
    small_chunks = await dead_lettered_since([bootstrap], TOPIC, starts, chunk=2)
    capped = await dead_lettered_since([bootstrap], TOPIC, starts, chunk=2, most=8)
    return small_chunks, capped


def test_a_worker_reads_back_what_was_dead_lettered_past_each_partitions_committed_offset(broker, caplog):
    (count, found), (_, capped) = asyncio.run(_scenario(broker))
    sent = [*range(0, 40, 3), *range(40, 90, 5)]
    assert count == 2
    assert found == {p: {o for o in sent if o >= start} for p, start in {0: 50, 1: 0, 2: 1_000, 3: 39}.items()}
    assert capped[2] == set() and len(capped[0]) < len(found[0])  # stops at `most`, and says so
    assert "without reaching partitions" in caplog.text
