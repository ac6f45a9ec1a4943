"""RecsReader.follow against a real Redis: from "now", it misses no update."""

from __future__ import annotations

import json
import uuid

import redis

from stream.recs import RecsReader, stream_key
from tests.support import REDIS_URL


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
