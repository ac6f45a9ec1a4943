"""Recommendations in Redis: the key layout, the payload, pipelined publishing and reading.

Layout (``{prefix}`` is ``POLYREC_REDIS_PREFIX``, default ``polyrec``):

* ``SET {prefix}:recs:{user_id}`` -> JSON payload, with a TTL (``POLYREC_RECS_TTL_S``);
* ``XADD {prefix}:recs MAXLEN ~ N`` -> fields ``user_id`` and ``payload`` (the same JSON):
  the change feed downstream services subscribe to.

Payload: ``{"user_id", "items": [{"item_id", "score"}], "model_version", "updated_at",
"event_ts", "partition", "offset"}``; both times are epoch milliseconds; ``partition`` and
``offset`` locate the user's last event in the micro-batch that computed it (in ``events``).

A payload is written only if Redis does not hold a newer one of the same user: one whose offset in
the same partition is larger (a Lua script, one round trip per batch). A worker dropped from the
group can still be writing a batch while the partition's next owner writes newer payloads; without
this check the older one could land last and Redis would go backwards.

An erasure (``polyrec forget``) deletes the user's key and leaves a marker for the key's TTL:

* ``SET {prefix}:erased:{sha256(user_id)}`` -> ``"{partition}:{offset}"`` of the erasure request.

A payload of that partition with a smaller offset (computed before the erasure, and written late
by a worker dropped from the group) is then refused like an older one, so an erased user's
recommendations cannot come back; payloads of their events after the request are written. The
marker holds a hash of the id, not the id.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

from stream.records import compact_json


def recs_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:recs:{user_id}"


def erased_key(prefix: str, user_id: str) -> str:
    return f"{prefix}:erased:{hashlib.sha256(user_id.encode('utf-8')).hexdigest()}"


def queue_erasure(pipe: Any, prefix: str, user_id: str, partition: int, offset: int, ttl_s: int) -> None:
    """Queue on a Redis pipeline (sync or async) the erasure of a user's recommendations: the marker
    of the request at ``partition``, ``offset`` first, then the key's deletion (its result: whether
    the key existed)."""
    pipe.set(erased_key(prefix, user_id), f"{partition}:{offset}", ex=ttl_s)
    pipe.delete(recs_key(prefix, user_id))


def stream_key(prefix: str) -> str:
    return f"{prefix}:recs"


def key_pattern(prefix: str) -> str:
    """A ``SCAN`` pattern of every key polyrec writes under ``prefix``."""
    return f"{prefix}:*"


def payload(user_id: str, items: list[str], scores: list[float], model_version: str,
            event_ts: float, partition: int, offset: int) -> dict[str, Any]:
    """The documented recommendation payload for one user (``updated_at`` is stamped when written;
    ``partition`` and ``offset`` come last: the write's Lua check finds them there)."""
    return {
        "user_id": user_id,
        "items": [{"item_id": i, "score": round(float(s), 6)} for i, s in zip(items, scores)],
        "model_version": model_version,
        "updated_at": None,
        "event_ts": event_ts,
        "partition": partition,
        "offset": offset,
    }


# KEYS: the users' recs keys, their erasure markers, then the stream. ARGV: ttl, maxlen, then per
# user: id, payload, partition, offset. A payload is written (SET and XADD) unless the held one, or
# the user's erasure, is of the same partition with a larger offset; returns the positions
# (1-based) of those not written.
_WRITE_NEWER = """
local n = (#KEYS - 1) / 2
local stream, ttl, maxlen = KEYS[2 * n + 1], ARGV[1], ARGV[2]
local stale = {}
for i = 1, n do
  local a = 2 + 4 * (i - 1)
  local part, off = ARGV[a + 3], tonumber(ARGV[a + 4])
  local held = redis.call('GET', KEYS[i])
  local p, o
  if held then p, o = string.match(held, '"partition":(%-?%d+),"offset":(%-?%d+)}$') end
  local ep, eo
  local erased = redis.call('GET', KEYS[n + i])
  if erased then ep, eo = string.match(erased, '^(%-?%d+):(%-?%d+)$') end
  if (p == part and tonumber(o) > off) or (ep == part and tonumber(eo) > off) then
    stale[#stale + 1] = i
  else
    redis.call('SET', KEYS[i], ARGV[a + 2], 'EX', ttl)
    redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', 'user_id', ARGV[a + 1], 'payload', ARGV[a + 2])
  end
end
return stale
"""


def redis_client(url: str, timeout_s: float) -> Any:
    """The worker's ``redis.asyncio`` client: a connect or command that takes longer than ``timeout_s``
    fails, and the client retries nothing itself, so the pipeline's own attempts are the only ones
    and a Redis outage costs a batch a known time (docs/operations.md, "Redis outages"). The
    library's defaults differ between versions (redis-py 8: 5 s socket timeouts and internal
    retries; 5.x: no socket timeout, so a hung Redis would hold a batch for ever)."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return aioredis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                             retry=Retry(NoBackoff(), 0))


class RecsPublisher:
    """Writes a micro-batch of payloads in one round trip (``redis.asyncio``), none over a newer one."""

    def __init__(self, redis: Any, prefix: str, ttl_s: int, maxlen: int) -> None:
        self.redis, self.prefix, self.ttl_s, self.maxlen = redis, prefix, ttl_s, maxlen
        self._write_newer = redis.register_script(_WRITE_NEWER)

    async def publish(self, payloads: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Stamp ``updated_at`` (now) on every payload and write them all in one round trip;
        returns those not written because Redis held a newer payload of their user."""
        if not payloads:
            return []
        now_ms = time.time() * 1000.0
        args: list[Any] = [self.ttl_s, self.maxlen]
        for p in payloads:
            p["updated_at"] = now_ms
            args += [p["user_id"], compact_json(p), p["partition"], p["offset"]]
        keys = ([recs_key(self.prefix, p["user_id"]) for p in payloads]
                + [erased_key(self.prefix, p["user_id"]) for p in payloads] + [stream_key(self.prefix)])
        return [payloads[int(i) - 1] for i in await self._write_newer(keys=keys, args=args)]

    async def forget(self, user_id: str, partition: int, offset: int) -> bool:
        """Erase a user's recommendations: mark the erasure (its request's ``partition`` and
        ``offset``) first, then delete the key, in one round trip; whether the key existed."""
        async with self.redis.pipeline(transaction=False) as pipe:
            queue_erasure(pipe, self.prefix, user_id, partition, offset, self.ttl_s)
            return bool((await pipe.execute())[1])


class RecsReader:
    """The read side for downstream Python services (a synchronous ``redis.Redis``)."""

    def __init__(self, redis: Any, prefix: str = "polyrec") -> None:
        self.redis, self.prefix = redis, prefix

    @classmethod
    def from_url(cls, url: str, prefix: str = "polyrec") -> RecsReader:
        import redis

        return cls(redis.Redis.from_url(url), prefix)

    def get(self, user_id: str) -> dict[str, Any] | None:
        """The latest recommendations of one user, or ``None``."""
        raw = self.redis.get(recs_key(self.prefix, user_id))
        return None if raw is None else json.loads(raw)

    def get_many(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Several users in one round trip."""
        raws = self.redis.mget([recs_key(self.prefix, u) for u in user_ids]) if user_ids else []
        return {u: (None if r is None else json.loads(r)) for u, r in zip(user_ids, raws)}

    def follow(self, last_id: str = "$", block_ms: int = 5000) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(stream_id, payload)`` for every update after ``last_id``, forever ("$": from now)."""
        stream = stream_key(self.prefix)
        if last_id == "$":  # resolved once: re-sending "$" after an idle wait would skip an update
            newest = self.redis.xrevrange(stream, count=1)
            last_id = newest[0][0] if newest else "0-0"
            last_id = last_id.decode() if isinstance(last_id, bytes) else last_id
        while True:
            for _, entries in self.redis.xread({stream: last_id}, block=block_ms, count=500) or []:
                for entry_id, fields in entries:
                    last_id = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    yield last_id, json.loads(fields[b"payload"] if b"payload" in fields else fields["payload"])
