"""Topic names and their creation (idempotent) with the right partitions and compaction.

A worker sends a user's state to the users changelog partition that matches the ``events``
partition it came from, so both must have ``POLYREC_PARTITIONS`` partitions: ``ensure_topics``
refuses to go on when an existing one has another count, instead of letting every batch of the
partitions the changelog lacks fail."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from stream.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool = False


def item_factors_topic(settings: Settings) -> str:
    return f"{settings.app_id}-item-factors"


USERS_TABLE = "users"  # the Faust table of user states (stream/app.py)
# The compacted topics' settings. A late record of an evicted owner is followed by the owner's newer
# one within about a second (docs/architecture.md, "late writes"); compaction must not run between.
COMPACTED = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}


def users_changelog_topic(settings: Settings) -> str:
    """The users table's changelog, named by Faust (``<app id>-<table>-changelog``)."""
    return f"{settings.app_id}-{USERS_TABLE}-changelog"


class TopicError(RuntimeError):
    """A topic polyrec needs could not be created, or exists with the wrong partition count."""


def creation_errors(topic_errors: list[tuple]) -> list[str]:
    """The failures in a CreateTopics response's ``(topic, error_code[, message])`` entries; a topic
    that already exists (created concurrently by another worker) is no failure."""
    return [f"{name}: {for_code(code).__name__}" + (f" ({rest[0]})" if rest and rest[0] else "")
            for name, code, *rest in topic_errors if code not in (0, TopicAlreadyExistsError.errno)]


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


@contextlib.asynccontextmanager
async def admin_client(bootstrap: list[str] | str, timeout: float = 30.0,
                       options: Mapping[str, Any] | None = None) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client whose requests time out after ``timeout`` s, closed on exit;
    ``options``: the connection's security (``Settings.kafka_options``)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **(options or {}))
    await asyncio.wait_for(admin.start(), timeout)
    try:
        yield admin
    finally:
        await admin.close()


async def ensure_topics(settings: Settings, replication: int = 1, timeout: float = 30.0) -> None:
    """Create the topics that do not exist yet; existing ones are left as they are, but the
    ``events`` topic and the users changelog must have ``settings.partitions`` partitions.
    Raises ``TopicError`` when they do not, or when the broker refuses to create a topic."""
    async with admin_client(settings.broker_list, timeout, settings.kafka_options()) as admin:
        existing = set(await admin.list_topics())
        co_partitioned = [t for t in (settings.events_topic, users_changelog_topic(settings)) if t in existing]
        described = await admin.describe_topics(co_partitioned) if co_partitioned else []  # [] would be all
        wrong = {d["topic"]: len(d["partitions"]) for d in described if len(d["partitions"]) != settings.partitions}
        if wrong:
            raise TopicError(
                ", ".join(f"topic {t!r} has {n} partitions" for t, n in sorted(wrong.items()))
                + f" but POLYREC_PARTITIONS is {settings.partitions}: the events topic and the users "
                  "changelog must both have POLYREC_PARTITIONS partitions (set it to the events topic's count)")
        new = [NewTopic(s.name, s.partitions, replication,
                        topic_configs=COMPACTED if s.compacted else {})
               for s in topic_specs(settings) if s.name not in existing]
        if new:
            failed = creation_errors((await admin.create_topics(new)).topic_errors)
            if failed:
                raise TopicError("the broker refused to create " + "; ".join(failed))
            log.info("created topics %s", ", ".join(t.name for t in new))


async def delete_topics(bootstrap: list[str], prefix: str, timeout: float = 30.0) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a demo run's, on a user's cluster);
    return their names. Raises ``TopicError`` naming the topics the broker would not delete."""
    async with admin_client(bootstrap, timeout) as admin:
        names = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
        if names:
            response = await admin.delete_topics(names, timeout_ms=int(timeout * 1000))
            failed = [f"{name}: error {code}" for name, code, *_ in response.topic_error_codes if code]
            if failed:
                raise TopicError("the broker refused to delete " + "; ".join(failed))
        return names
