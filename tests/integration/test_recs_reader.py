"""RecsPublisher and RecsReader against a real Redis: TTL and stream trimming, and follow() from
"now" missing no update."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
import redis
import redis.asyncio as aioredis

from stream.recs import RecsPublisher, RecsReader, erased_key, payload, recs_key, stream_key
from tests.support import REDIS_URL

pytestmark = pytest.mark.integration


class WritesAfterFirstIdleRead(redis.Redis):
    """A real client that, right after its first XREAD comes back empty, adds one update: the
    window in which re-sending "$" would skip it."""

    def __init__(self, stream: str) -> None:
        super().__init__(connection_pool=redis.ConnectionPool.from_url(REDIS_URL))
        self.stream, self.reads = stream, 0

    def xread(self, *args, **kwargs):
        assert self.reads < 5, "the update was skipped: follow() keeps waiting for a newer one"
        got = super().xread(*args, **kwargs)
        self.reads += 1
        if self.reads == 1 and not got:
            self.xadd(self.stream, {"user_id": "u1", "payload": json.dumps({"user_id": "u1"})})
        return got


def test_follow_from_now_gets_an_update_written_between_two_idle_waits(redis_client):
    prefix = f"test-follow-{uuid.uuid4().hex[:8]}"
    stream = stream_key(prefix)
    try:
        redis_client.xadd(stream, {"user_id": "old", "payload": json.dumps({"user_id": "old"})})
        client = WritesAfterFirstIdleRead(stream)
        updates = RecsReader(client, prefix).follow(block_ms=1)
        _, payload = next(updates)
        assert payload == {"user_id": "u1"}  # not "old" (before "now"), and not skipped
        assert client.reads == 2
        client.close()
    finally:
        redis_client.delete(stream)


def test_published_keys_expire_and_the_stream_is_trimmed(redis_client):
    prefix = f"test-publish-{uuid.uuid4().hex[:8]}"

    async def publish() -> None:
        client = aioredis.from_url(REDIS_URL)
        try:
            publisher = RecsPublisher(client, prefix, ttl_s=60, maxlen=50)
            for batch in range(3):
                await publisher.publish([payload(f"u{n}", [], [], f"v{batch}", 0.0, 0, batch) for n in range(200)])
        finally:
            await client.aclose()

    try:
        asyncio.run(publish())
        ttls = {redis_client.ttl(recs_key(prefix, f"u{n}")) for n in range(200)}
        assert all(0 < t <= 60 for t in ttls), ttls
        assert json.loads(redis_client.get(recs_key(prefix, "u7")))["model_version"] == "v2"  # the latest write
        # MAXLEN ~ trims whole stream nodes (100 entries by default): about 50 remain, never all 600
        assert 50 <= redis_client.xlen(stream_key(prefix)) <= 150
    finally:
        redis_client.delete(stream_key(prefix), *(recs_key(prefix, f"u{n}") for n in range(200)))


def test_a_payload_older_than_the_one_redis_holds_is_not_written(redis_client):
    """A late write of an owner dropped from the group (a smaller offset in the same partition) loses
    to the newer payload, in the key and in the stream; another partition's, or a key without one, wins."""
    prefix = f"test-fence-{uuid.uuid4().hex[:8]}"

    async def publish(*payloads: dict) -> list[str]:
        client = aioredis.from_url(REDIS_URL)
        try:
            stale = await RecsPublisher(client, prefix, ttl_s=60, maxlen=50).publish(list(payloads))
            return [p["user_id"] for p in stale]
        finally:
            await client.aclose()

    def held(user: str) -> tuple[str, int, int]:
        p = json.loads(redis_client.get(recs_key(prefix, user)))
        return p["model_version"], p["partition"], p["offset"]

    try:
        redis_client.set(recs_key(prefix, "old"), json.dumps({"user_id": "old", "items": []}))  # before offsets
        def p(user: str, version: str, partition: int, offset: int) -> dict:
            return payload(user, [], [], version, 0.0, partition, offset)

        assert asyncio.run(publish(p("a", "new", 3, 90), p("old", "x", 1, 5))) == []
        assert asyncio.run(publish(p("a", "late", 3, 40), p("b", "b1", 3, 1))) == ["a"]
        assert held("a") == ("new", 3, 90) and held("b") == ("b1", 3, 1) and held("old") == ("x", 1, 5)
        assert asyncio.run(publish(p("a", "same", 3, 90))) == []  # an equal offset: a replay
        assert asyncio.run(publish(p("a", "moved", 0, 7))) == []  # another partition's
        assert held("a") == ("moved", 0, 7)
        feed = [json.loads(f[b"payload"])["model_version"] for _, f in redis_client.xrange(stream_key(prefix))]
        assert feed == ["new", "x", "b1", "same", "moved"]  # the refused one is not in the feed either
    finally:
        redis_client.delete(stream_key(prefix), *(recs_key(prefix, u) for u in ("a", "b", "old")))


def test_the_recs_command_prints_a_users_payload_and_fails_for_an_unknown_user(redis_client, monkeypatch, capsys):
    from polyrec_cli.main import main

    prefix = f"test-cli-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("POLYREC_REDIS_PREFIX", prefix)
    payload = {"user_id": "u1", "items": [{"item_id": "Amélie", "score": 1}]}
    redis_client.set(recs_key(prefix, "u1"), json.dumps(payload))
    try:
        assert main(["recs", "u1"]) == 0
        assert json.loads(capsys.readouterr().out)["items"] == [{"item_id": "Amélie", "score": 1}]
        assert main(["recs", "nobody"]) == 1
        assert "no recommendations for user 'nobody'" in capsys.readouterr().err
    finally:
        redis_client.delete(recs_key(prefix, "u1"))


def test_an_erased_user_s_payloads_from_before_the_erasure_are_refused_and_later_ones_written(redis_client):
    """A late write of a batch learned before the erasure (a smaller offset in the request's
    partition) must not bring an erased user's recommendations back; their events after the
    request, or another partition's, write as usual. The marker names a hash, not the id."""
    prefix = f"test-erased-{uuid.uuid4().hex[:8]}"

    async def run_with(action):
        client = aioredis.from_url(REDIS_URL)
        try:
            return await action(RecsPublisher(client, prefix, ttl_s=60, maxlen=50))
        finally:
            await client.aclose()

    def p(version: str, partition: int, offset: int) -> dict:
        return payload("eve", [], [], version, 0.0, partition, offset)

    def published(*payloads: dict) -> list[str]:
        return [x["model_version"] for x in asyncio.run(run_with(lambda pub: pub.publish(list(payloads))))]

    try:
        assert published(p("before", 2, 50)) == []
        assert asyncio.run(run_with(lambda pub: pub.forget("eve", 2, 60))) is True
        assert redis_client.get(recs_key(prefix, "eve")) is None
        marker = redis_client.get(erased_key(prefix, "eve"))
        assert marker == b"2:60" and b"eve" not in erased_key(prefix, "eve").encode()
        assert 0 < redis_client.ttl(erased_key(prefix, "eve")) <= 60
        assert published(p("late", 2, 55)) == ["late"]  # learned before the erasure, written after it
        assert redis_client.get(recs_key(prefix, "eve")) is None
        assert published(p("after", 2, 61)) == []  # an event after the request
        assert json.loads(redis_client.get(recs_key(prefix, "eve")))["model_version"] == "after"
        assert asyncio.run(run_with(lambda pub: pub.forget("eve", 2, 60))) is True  # a repeat: harmless
        assert published(p("moved", 1, 3)) == []  # another partition's offsets do not compare
        feed = [json.loads(f[b"payload"])["model_version"] for _, f in redis_client.xrange(stream_key(prefix))]
        assert feed == ["before", "after", "moved"]
    finally:
        redis_client.delete(stream_key(prefix), recs_key(prefix, "eve"), erased_key(prefix, "eve"))
