"""The local harness that the demo, the benches and the tests share: a worker child process, a
producer that sends records to a topic, and a reader of a topic (the item-factor topic's events per
item among what it reads back).

>>> w = WorkerProcess({"KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
>>> w.url("/polyrec/ready") == f"http://127.0.0.1:{w.web_port}/polyrec/ready"
True
"""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polyrec_cli.devservers import EmbeddedError, free_port
from stream.wire import TEXT_SOURCE, ItemRecord

PROGRESS_EVERY = 1000  # records between progress calls (and yields to the event loop)


class WorkerExited(EmbeddedError):
    """The worker process ended while it was expected to run; the message holds its log's tail."""


def get_json(url: str, timeout: float = 2.0) -> tuple[int, dict[str, Any]]:
    """HTTP status and JSON body of a GET (an error status too, with its body)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@dataclass
class WorkerProcess:
    """A ``polyrec worker`` child process on its own web and metrics ports; ``stop()`` ends it.

    ``env`` is its whole environment (the ports are added); ``log`` takes its output (None:
    discarded); ``cwd`` is the checkout whose code it runs (the bench's ``--baseline``: an older
    one); ``workdir``, if given, is removed once it has stopped.
    """

    env: dict[str, str]
    log: Path | None = None
    cwd: Path | None = None
    loglevel: str = "info"
    workdir: str | None = None
    web_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    name: str = "worker"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.web_port}"

    def start(self, new_session: bool = False) -> WorkerProcess:
        """Start it; ``new_session``: out of the caller's process group (a Ctrl-C reaches only the caller)."""
        env = dict(self.env, POLYREC_WEB_PORT=str(self.web_port), POLYREC_METRICS_PORT=str(self.metrics_port))
        root = self.cwd or Path.cwd()
        entry = "polyrec_cli" if (root / "polyrec_cli").is_dir() else "polyrec.cli"  # older checkouts
        out = subprocess.DEVNULL if self.log is None else self.log.open("ab")
        # ``-m`` puts the working directory first on sys.path: ``cwd``'s packages win over the venv's
        self.proc = subprocess.Popen([sys.executable, "-m", entry, "worker", "--loglevel", self.loglevel], env=env,
                                     cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=new_session)
        return self

    def url(self, path: str) -> str:
        return f"http://{self.address}{path}"

    def check(self) -> None:
        """Raise :class:`WorkerExited` if the process has ended."""
        if self.proc is None or self.proc.poll() is not None:
            tail = self.log.read_text()[-3000:] if self.log and self.log.exists() else "(no log)"
            raise WorkerExited(f"the worker exited (code {self.proc and self.proc.returncode}); its log:\n{tail}")

    def assigned(self) -> set[int]:
        """The ``events`` partitions it holds, as /polyrec/ready lists them (empty while not ready)."""
        try:
            code, body = get_json(self.url("/polyrec/ready"))
        except OSError:
            return set()
        return set(body.get("assigned", ())) if code == 200 else set()

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until it is ready and holds a partition."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check()
            if self.assigned():
                return
            time.sleep(0.2)
        raise EmbeddedError(f"the worker was not ready within {timeout:.0f} s (log: {self.log})")

    def metrics(self) -> str:
        """Its /metrics page."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as r:
            return r.read().decode()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig``, wait up to ``timeout`` (then kill); remove ``workdir``; its exit code."""
        code = 0
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return code


async def send_records(bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]],
                       rate: float | None = None, on_sent: Callable[[int], None] | None = None,
                       **producer: Any) -> int:
    """Send every ``(key, value)`` of ``records`` to ``topic``, in order, and flush; at most ``rate``
    records/s (None: as fast as the producer goes). Every :data:`PROGRESS_EVERY` records it calls
    ``on_sent(n)`` and yields to the event loop. ``producer``: options of ``AIOKafkaProducer``.
    Returns how many were sent."""
    from aiokafka import AIOKafkaProducer

    client = AIOKafkaProducer(bootstrap_servers=bootstrap, **({"linger_ms": 5} | producer))
    await client.start()
    sent, reported, started = 0, 0, time.perf_counter()
    try:
        for key, value in records:
            await client.send(topic, value, key=key)
            sent += 1
            if rate and sent % 50 == 0:
                ahead = sent / rate - (time.perf_counter() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            if sent - reported == PROGRESS_EVERY:
                if on_sent:
                    on_sent(sent - reported)
                reported = sent
                await asyncio.sleep(0)
        await client.flush()
    finally:
        await client.stop()
    if on_sent and sent > reported:
        on_sent(sent - reported)
    return sent


def event_record(user: str, item: str, event: str = "click", ts: int | None = None,
                 **extra: Any) -> tuple[bytes, bytes]:
    """An ``events`` record (docs/contracts.md): the user id as key, the JSON event as value; ``ts``
    now unless given."""
    body = {"user_id": user, "item_id": item, "event": event,
            "ts": int(time.time() * 1000) if ts is None else ts, **extra}
    return user.encode(), json.dumps(body).encode()


async def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list:
    """Every record currently in ``topic`` (all partitions, from the beginning); raises if that takes
    longer than ``timeout`` (a partial read must not pass for an empty topic)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
                return out
            for recs in (await consumer.getmany(timeout_ms=200)).values():
                out.extend(recs)
        raise AssertionError(f"read only {len(out)} records of {topic} to its end offsets in {timeout:.0f} s")
    finally:
        await consumer.stop()


def latest_item_records(records: Iterable) -> list[ItemRecord]:
    """The item-factor topic as compaction leaves it, from its ``records`` in offset order: the last
    record of every key (one key lives in one partition)."""
    latest = {r.key: r.value for r in records}
    return [ItemRecord.from_json(json.loads(v)) for v in latest.values()]


def item_counts(records: Iterable) -> Counter:
    """Events per item as the item-factor topic's ``records`` hold them: the latest contribution of
    each partition, summed over partitions (text records count none)."""
    counts: Counter = Counter()
    for rec in latest_item_records(records):
        if rec.source != TEXT_SOURCE:
            counts[rec.item_id] += rec.count
    return counts
