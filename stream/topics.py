"""Topic names and their creation (idempotent) with the right partitions and compaction."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from polyrec.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


def item_factors_topic(settings: Settings) -> str:
    return f"{settings.app_id}-item-factors"


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """Every topic polyrec reads or writes, except the users table changelog Faust creates."""
    n = settings.partitions
    return [
        TopicSpec(settings.events_topic, n),
        TopicSpec(settings.items_topic, n),
        TopicSpec(f"{settings.events_topic}.dlq", n),
        TopicSpec(f"{settings.items_topic}.dlq", n),
        TopicSpec(item_factors_topic(settings), n, compacted=True),
    ]


async def ensure_topics(settings: Settings, replication: int = 1, timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_list, request_timeout_ms=int(timeout * 1000))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(s.name, s.partitions, replication,
                        topic_configs={"cleanup.policy": "compact"} if s.compacted else {})
               for s in topic_specs(settings) if s.name not in existing]
        if new:
            try:
                await admin.create_topics(new)
            except TopicAlreadyExistsError:
                pass  # created concurrently by another worker
            log.info("created topics %s", ", ".join(t.name for t in new))
    finally:
        await admin.close()
