"""``polyrec demo``: the whole pipeline on embedded defaults, on real data.

A local Tansu broker (unless ``KAFKA_BOOTSTRAP`` names one) and Redis (started if nothing
listens at ``REDIS_URL`` and ``redis-server`` is installed), one worker, and MovieLens-100K
replayed through Kafka: first the catalogue through ``items`` (titles and genres, encoded by the
worker's items agent), then the ratings as events, with a live view of fresh recommendations.
Each event's ``ts`` is its send time (the rating's own time rides along as ``rating_ts``), so
freshness is exact: from each event's ``ts`` to the first write of its user's recommendations
that had learned it (``polyrec/evaluation/freshness.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from polyrec.datasets.movielens import Movie, load_interactions, load_movies
from polyrec.evaluation.freshness import event_freshness
from polyrec_cli.devservers import EmbeddedError, LocalServer, ensure_redis, start_tansu
from polyrec_cli.harness import WorkerProcess, event_record, send_records
from stream.metrics import scrape_totals
from stream.recs import key_pattern, recs_key, stream_key
from stream.settings import Settings, redact_url
from stream.topics import delete_topics


@dataclass
class DemoResult:
    events: int
    seconds: float
    freshness_ms: np.ndarray
    users_with_recs: int


async def replay_ratings(bootstrap: str, topic: str, limit: int | None, progress) -> tuple[list[str], list[int]]:
    """Send the ratings as events, as fast as the producer goes; returns their users and ``ts``."""
    x = load_interactions()
    n = len(x) if limit is None else min(limit, len(x))
    stamps: list[int] = []

    def records() -> Iterator[tuple[bytes, bytes]]:
        for u, i, e, ts in zip(x.users[:n], x.items[:n], x.events[:n], x.ts[:n]):
            stamps.append(int(time.time() * 1000))  # the send time: freshness is measured from it
            yield event_record(u, i, e, ts=stamps[-1], rating_ts=int(ts) * 1000)

    await send_records(bootstrap, topic, records(), on_sent=progress, max_batch_size=256 * 1024)
    return list(x.users[:n]), stamps


def item_record(movie: Movie, ts_ms: int) -> dict:
    """A movie as an ``items`` record: its title with the year, its genres as the description."""
    return {"item_id": movie.item_id, "title": movie.display_title, "description": movie.description, "lang": "en",
            "ts": ts_ms}


async def publish_catalogue(bootstrap: str, topic: str, movies: list[Movie]) -> None:
    """The catalogue as ``items`` records (``item_record``)."""
    now = int(time.time() * 1000)
    await send_records(bootstrap, topic, ((m.item_id.encode(), json.dumps(item_record(m, now)).encode())
                                          for m in movies))


def _sample_table(redis, prefix: str, titles: dict[str, str], n_users: int = 4):
    from rich.table import Table

    table = Table(title="Fresh recommendations (latest updates in Redis)", expand=True)
    table.add_column("user", width=6)
    table.add_column("top-10 (title)", ratio=1)
    table.add_column("age", width=8, justify="right")
    seen: set[str] = set()
    for _, fields in redis.xrevrange(stream_key(prefix), count=200):
        p = json.loads(fields[b"payload"])
        if p["user_id"] in seen:
            continue
        seen.add(p["user_id"])
        names = " · ".join(titles.get(x["item_id"], x["item_id"]) for x in p["items"])
        table.add_row(p["user_id"], names, f"{(time.time() * 1000 - p['updated_at']) / 1000:.1f} s")
        if len(seen) == n_users:
            break
    return table


T = TypeVar("T")


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and SIGHUP (``kill``, ``timeout``, a closed terminal) end the demo like Ctrl-C does,
    through its ``finally``: the children run in their own sessions and would outlive it.

    They are turned into a SIGINT, not raised here: inside ``asyncio.Runner.run`` a SIGINT cancels
    the running task, which then closes its producer; a KeyboardInterrupt raised at whatever line
    the signal lands on could break off aiokafka's own callbacks halfway (their futures then hold
    the exception, and the demo ended with tracebacks and, once, its work folder left behind).
    While an event loop runs, the SIGINT is raised from a callback of that loop, not from the line
    the signal landed on: the runner's handler cancels the task's awaited future at once, and in the
    middle of aiokafka's ``_handle_frame`` (between its ``fut.done()`` check and ``set_result``)
    that ended the demo with an ``InvalidStateError`` traceback (1 run in CI, 2026-12-06).

    Yields an event set by the first such signal, for :func:`_run`: the cancellation can be
    swallowed (aiokafka's client ``close`` awaits its own cancelled task under
    ``suppress(CancelledError)``, which also eats the cancellation of the task awaiting it), and the
    demo then went on to the end and exited 0 (a flake of its SIGTERM test, 2026-12-05)."""
    requested = threading.Event()

    def interrupt(signum: int, frame: object) -> None:
        requested.set()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # between event loops: a KeyboardInterrupt here is safe
            signal.raise_signal(signal.SIGINT)
        else:
            loop.call_soon_threadsafe(signal.raise_signal, signal.SIGINT)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield requested
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(runner: asyncio.Runner, coro: Coroutine[Any, Any, T], interrupted: threading.Event) -> T:
    """``runner.run(coro)``, and a KeyboardInterrupt after it if ``interrupted`` was set meanwhile
    (:func:`_stop_on_signals`): a signal whose cancellation the coroutine swallowed still ends the demo."""
    result = runner.run(coro)
    if interrupted.is_set():
        raise KeyboardInterrupt
    return result


def run_demo(limit: int | None = None, keep_running: bool = False, items_timeout_s: float = 300.0) -> DemoResult:
    """Run the demo; everything it started is stopped on return, on error and on Ctrl-C/SIGTERM,
    unless ``keep_running`` (then it prints how to query and stop it)."""
    with _stop_on_signals() as interrupted:
        demo = _Demo(keep_running, interrupted)
        try:
            demo.start()
            movies = load_movies()
            demo.encode_catalogue(list(movies.values()), items_timeout_s)
            result = demo.replay({k: m.display_title for k, m in movies.items()}, limit)
            if keep_running:
                demo.print_how_to_query()
            return result
        except Exception:
            demo.failed = True
            raise
        finally:
            demo.stop()


class _Demo:
    """One demo run: its servers and worker, its topics and Redis prefix, its progress on screen."""

    def __init__(self, keep_running: bool, interrupted: threading.Event) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console()
        self.keep_running, self.failed = keep_running, False  # failed: keep the work folder (the worker's log)
        self.base = Settings.from_env()
        self.servers: list[LocalServer | WorkerProcess] = []  # stopped in reverse order: the worker first
        self.workdir = Path(tempfile.mkdtemp(prefix="polyrec-demo-"))
        self.run_id = f"polyrec-demo-{int(time.time())}"
        self.prefix = self.run_id  # a Redis prefix of its own: keys of an interrupted run never count in the next
        self.external = bool(os.environ.get("KAFKA_BOOTSTRAP"))  # a user's Kafka: the demo's topics go afterwards
        self.events_topic, self.items_topic = self.base.events_topic, self.base.items_topic
        # one event loop, built now: an interrupt that lands while asyncio.run builds a loop leaves
        # a half-built one whose finaliser prints a traceback
        self.runner = asyncio.Runner()
        self.runner.get_loop()
        self.interrupted = interrupted  # set by SIGTERM or SIGHUP
        self.redis = None
        self.progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn())

    def start(self) -> None:
        """The broker (embedded unless ``KAFKA_BOOTSTRAP``), Redis and one worker, ready."""
        import redis as redis_lib

        console, base = self.console, self.base
        if self.external:
            self.bootstrap = base.kafka_bootstrap
            # never replay MovieLens into a real cluster's own topics
            self.events_topic, self.items_topic = f"{self.run_id}-events", f"{self.run_id}-items"
            console.print(f"broker: {self.bootstrap} (KAFKA_BOOTSTRAP); demo topics {self.events_topic}, "
                          f"{self.items_topic}")
        else:
            self.servers.append(start_tansu())
            self.bootstrap = self.servers[-1].address
            console.print(f"broker: embedded Tansu at {self.bootstrap}")
        self.servers.append(ensure_redis(base.redis_url))
        started = " (started for this demo)" if self.servers[-1].proc else ""
        console.print(f"redis:  {redact_url(base.redis_url)}{started}")
        self.redis = redis_lib.Redis.from_url(base.redis_url)
        env = dict(os.environ, KAFKA_BOOTSTRAP=self.bootstrap, POLYREC_REDIS_PREFIX=self.prefix,
                   POLYREC_APP_ID=self.run_id, POLYREC_DATA_DIR=str(self.workdir / "data"), POLYREC_ITEMS_AGENT="1",
                   POLYREC_EVENTS_TOPIC=self.events_topic, POLYREC_ITEMS_TOPIC=self.items_topic)
        self.worker = WorkerProcess(env, log=self.workdir / "worker.log").start(new_session=True)
        self.servers.append(self.worker)
        with console.status("starting the worker (joins the consumer group, recovers state)..."):
            self.worker.wait_ready()
        console.print(f"worker: ready (metrics http://127.0.0.1:{self.worker.metrics_port}/metrics, "
                      f"log {self.worker.log})")

    def encode_catalogue(self, movies: list[Movie], timeout_s: float) -> None:
        """Send the catalogue through ``items`` and wait until the worker has encoded (or dead-lettered) it."""
        from rich.live import Live

        task = self.progress.add_task("items encoded", total=len(movies))
        with Live(self.progress, console=self.console, refresh_per_second=4):
            _run(self.runner, publish_catalogue(self.bootstrap, self.items_topic, movies), self.interrupted)
            deadline = time.monotonic() + timeout_s
            while True:
                m = scrape_totals(self.worker.metrics_port)  # a dead-lettered item is handled too
                handled = m.get("polyrec_encoder_items_total", 0) + m.get("polyrec_dlq_records_total", 0)
                self.progress.update(task, completed=handled)
                if handled >= len(movies):
                    return
                self.worker.check()
                if time.monotonic() > deadline:
                    raise EmbeddedError(f"only {handled:.0f} of {len(movies)} items were encoded within "
                                        f"{timeout_s:.0f} s; see {self.worker.log}")
                time.sleep(0.25)

    def replay(self, titles: dict[str, str], limit: int | None) -> DemoResult:
        """Replay the ratings as events with a live view of fresh recommendations; then the report."""
        from rich.console import Group
        from rich.live import Live

        total = len(load_interactions()) if limit is None else limit
        sent_task = self.progress.add_task("events produced", total=total)
        done_task = self.progress.add_task("events learned", total=total)
        started = time.time()

        def view() -> Group:
            return Group(self.progress, _sample_table(self.redis, self.prefix, titles))

        with Live(view(), console=self.console, refresh_per_second=4) as live:
            async def main() -> tuple[list[str], list[int]]:
                producing = asyncio.create_task(replay_ratings(self.bootstrap, self.events_topic, limit,
                                                               lambda n: self.progress.advance(sent_task, n)))
                while True:
                    done = scrape_totals(self.worker.metrics_port).get("polyrec_events_total", 0)
                    self.progress.update(done_task, completed=done)
                    live.update(view())
                    if producing.done() and done >= len(producing.result()[0]):
                        return producing.result()
                    self.worker.check()
                    await asyncio.sleep(0.25)

            sent_users, sent_ts = _run(self.runner, main(), self.interrupted)
        return self.report(sent_users, sent_ts, time.time() - started)

    def report(self, sent_users: list[str], sent_ts: list[int], seconds: float) -> DemoResult:
        """Events/s and freshness, printed and returned."""
        r, n = self.redis, len(sent_users)
        fresh, missing = event_freshness(sent_users, sent_ts,
                                         (json.loads(f[b"payload"]) for _, f in r.xrange(stream_key(self.prefix))))
        users = sum(1 for _ in r.scan_iter(recs_key(self.prefix, "*"), count=1000))
        self.console.print(f"\n[bold]{n:,} events[/] learned in {seconds:.1f} s: [bold]{n / seconds:,.0f} events/s[/] "
                           f"end to end (Tansu -> worker -> Redis), {users} users with recommendations")
        self.console.print(f"freshness (event sent -> recommendations in Redis): p50 {np.percentile(fresh, 50):.0f} "
                           f"ms, p99 {np.percentile(fresh, 99):.0f} ms over {len(fresh):,} events ({missing} without "
                           f"an update; the replay sends as fast as it can, so this includes queueing; "
                           f"bench/stream_throughput.py measures a fixed rate)")
        return DemoResult(n, seconds, fresh, users)

    def print_how_to_query(self) -> None:
        """What is still running, how to query it and how to stop it; it is left running."""
        _print_how_to_query(self.console, self.redis, self.prefix, self.base.redis_url, self.worker.metrics_port,
                            self.servers, self.workdir)
        self.servers = []

    def stop(self) -> None:
        """Stop what was started and remove what the run wrote (not with ``keep_running``; the work
        folder stays after a failure)."""
        # first, while the broker is up: cancels what an interrupt left running; a signal's SIGINT
        # still queued on the loop (its run ended first) raises here, and must not skip the rest
        with contextlib.suppress(KeyboardInterrupt):
            self.runner.close()
        for server in reversed(self.servers):
            server.stop(timeout=30)
        if self.external and not self.keep_running:
            try:
                deleted = asyncio.run(delete_topics(self.base.broker_list, f"{self.run_id}-"))
                self.console.print(f"deleted the demo's {len(deleted)} topics ({self.run_id}-*) from "
                                   f"{self.base.kafka_bootstrap}")
            except Exception as exc:  # noqa: BLE001 - report, and never hide what failed before
                self.console.print(f"[red]could not delete the demo's topics {self.run_id}-* (delete them by hand): "
                                   f"{exc!r}")
        if not self.keep_running and self.redis is not None:
            with contextlib.suppress(Exception):  # Redis may be what failed
                keys = list(self.redis.scan_iter(key_pattern(self.prefix), count=1000))
                if keys:
                    self.redis.delete(*keys)
        if not (self.keep_running or self.failed):
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self.workdir.exists():
                self.console.print(f"[red]could not remove the demo's work folder {self.workdir}")


def _print_how_to_query(console, r, prefix: str, redis_url: str, metrics_port: int,
                        servers: list[LocalServer | WorkerProcess], workdir: Path) -> None:
    last = r.xrevrange(stream_key(prefix), count=1)
    user = json.loads(last[0][1][b"payload"])["user_id"] if last else "42"
    polyrec = Path(sys.executable).parent / "polyrec"
    url = redact_url(redis_url)
    pids = [s.proc.pid for s in reversed(servers) if s.proc]  # the worker first, while its broker is up
    stop = " && ".join(f"kill {pid} && while kill -0 {pid} 2>/dev/null; do sleep 0.2; done" for pid in pids)
    console.print(f"\n[bold]still running[/] (stop with: {stop})", soft_wrap=True)
    folders = " ".join([str(workdir)] + [s.workdir for s in servers if s.workdir])  # Tansu's, Redis's data
    for command in (f"REDIS_URL={url} POLYREC_REDIS_PREFIX={prefix} {polyrec} recs {user}",
                    f"redis-cli -u {url} GET {recs_key(prefix, user)}",
                    f"curl http://127.0.0.1:{metrics_port}/metrics"):
        console.print(f"  {command}", soft_wrap=True, markup=False, highlight=False)  # one line: copy-pastable
    console.print(f"  afterwards: redis-cli -u {url} --scan --pattern '{key_pattern(prefix)}' "
                  f"| xargs -r redis-cli -u {url} DEL; rm -rf {folders}", soft_wrap=True, markup=False, highlight=False)

