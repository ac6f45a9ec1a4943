"""Topic creation on a real Tansu broker: the co-partitioned topics must have the configured
partition count."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import NewTopic

from stream.settings import Settings
from stream.topics import TopicError, admin_client, ensure_topics, topic_specs, users_changelog_topic
from tests.support import topic_partitions


async def _create(broker: str, name: str, partitions: int) -> None:
    async with admin_client(broker) as admin:
        await admin.create_topics([NewTopic(name, partitions, 1)])


def _settings(broker: str, partitions: int = 4) -> Settings:
    run = uuid.uuid4().hex[:8]
    return Settings(kafka_bootstrap=broker, app_id=f"topics-{run}", events_topic=f"events-{run}",
                    items_topic=f"items-{run}", partitions=partitions)


@pytest.mark.integration
def test_missing_topics_are_created_with_the_configured_partitions_twice_over(broker):
    settings = _settings(broker, partitions=3)
    asyncio.run(ensure_topics(settings))
    asyncio.run(ensure_topics(settings))  # idempotent
    specs = topic_specs(settings)
    assert asyncio.run(topic_partitions(broker, [s.name for s in specs])) == {s.name: 3 for s in specs}


@pytest.mark.integration
@pytest.mark.parametrize("which", ["events", "changelog"])
def test_an_existing_co_partitioned_topic_with_another_partition_count_stops_the_start(broker, which):
    settings = _settings(broker, partitions=4)
    name = settings.events_topic if which == "events" else users_changelog_topic(settings)
    asyncio.run(_create(broker, name, 2))
    with pytest.raises(TopicError, match=f"topic '{name}' has 2 partitions but POLYREC_PARTITIONS is 4"):
        asyncio.run(ensure_topics(settings))
    others = [s.name for s in topic_specs(settings) if s.name != name]
    assert asyncio.run(topic_partitions(broker, others)) == {}  # refused before creating anything
