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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


async def _replay(bootstrap: str, topic: str, limit: int | None, progress) -> tuple[list[str], list[int]]:
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


async def _publish_items(bootstrap: str, topic: str, movies: list[Movie]) -> None:
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


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP (``kill``, ``timeout``, a closed terminal) end the demo like Ctrl-C does,
    through its ``finally``: the children run in their own sessions and would outlive it."""
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(limit: int | None = None, keep_running: bool = False, items_timeout_s: float = 300.0) -> DemoResult:
    """Run the demo; everything it started is stopped on return, on error and on Ctrl-C/SIGTERM,
    unless ``keep_running`` (then it prints how to query and stop it)."""
    import redis as redis_lib
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console()
    base = Settings.from_env()
    servers: list[LocalServer | WorkerProcess] = []  # stopped in reverse order: the worker first
    workdir = Path(tempfile.mkdtemp(prefix="polyrec-demo-"))
    run_id = f"polyrec-demo-{int(time.time())}"
    prefix = run_id  # a Redis prefix of its own: keys of an interrupted run never count in the next
    r = None
    failed = False  # keep the work folder (the worker's log) when something went wrong
    external = bool(os.environ.get("KAFKA_BOOTSTRAP"))  # a user's Kafka: the demo's topics go afterwards
    with _stop_on_signals():
        try:
            events_topic, items_topic = base.events_topic, base.items_topic
            if external:
                bootstrap = base.kafka_bootstrap
                # never replay MovieLens into a real cluster's own topics
                events_topic, items_topic = f"{run_id}-events", f"{run_id}-items"
                console.print(f"broker: {bootstrap} (KAFKA_BOOTSTRAP); demo topics {events_topic}, {items_topic}")
            else:
                servers.append(start_tansu())
                bootstrap = servers[-1].address
                console.print(f"broker: embedded Tansu at {bootstrap}")
            servers.append(ensure_redis(base.redis_url))
            started = " (started for this demo)" if servers[-1].proc else ""
            console.print(f"redis:  {redact_url(base.redis_url)}{started}")
            r = redis_lib.Redis.from_url(base.redis_url)
            env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, POLYREC_REDIS_PREFIX=prefix, POLYREC_APP_ID=run_id,
                       POLYREC_DATA_DIR=str(workdir / "data"), POLYREC_ITEMS_AGENT="1",
                       POLYREC_EVENTS_TOPIC=events_topic, POLYREC_ITEMS_TOPIC=items_topic)
            worker = WorkerProcess(env, log=workdir / "worker.log").start(new_session=True)
            servers.append(worker)
            metrics_port, log = worker.metrics_port, worker.log
            with console.status("starting the worker (joins the consumer group, recovers state)..."):
                worker.wait_ready()
            console.print(f"worker: ready (metrics http://127.0.0.1:{metrics_port}/metrics, log {log})")
            movies = load_movies()
            titles = {k: m.display_title for k, m in movies.items()}
            total = len(load_interactions()) if limit is None else limit
            progress = Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn())
            items_task = progress.add_task("items encoded", total=len(movies))
            with Live(progress, console=console, refresh_per_second=4):
                asyncio.run(_publish_items(bootstrap, items_topic, list(movies.values())))
                deadline = time.monotonic() + items_timeout_s
                while True:
                    m = scrape_totals(metrics_port)  # a dead-lettered item is handled too
                    handled = m.get("polyrec_encoder_items_total", 0) + m.get("polyrec_dlq_records_total", 0)
                    progress.update(items_task, completed=handled)
                    if handled >= len(movies):
                        break
                    worker.check()
                    if time.monotonic() > deadline:
                        raise EmbeddedError(f"only {handled:.0f} of {len(movies)} items were encoded within "
                                            f"{items_timeout_s:.0f} s; see {log}")
                    time.sleep(0.25)
            sent_task = progress.add_task("events produced", total=total)
            done_task = progress.add_task("events learned", total=total)
            started = time.time()

            with Live(Group(progress, _sample_table(r, prefix, titles)), console=console, refresh_per_second=4) as live:
                async def main() -> tuple[list[str], list[int]]:
                    producing = asyncio.create_task(_replay(bootstrap, events_topic, limit,
                                                            lambda n: progress.advance(sent_task, n)))
                    while True:
                        done = scrape_totals(metrics_port).get("polyrec_events_total", 0)
                        progress.update(done_task, completed=done)
                        live.update(Group(progress, _sample_table(r, prefix, titles)))
                        if producing.done() and done >= len(producing.result()[0]):
                            return producing.result()
                        worker.check()
                        await asyncio.sleep(0.25)

                sent_users, sent_ts = asyncio.run(main())
            seconds = time.time() - started
            n = len(sent_users)
            fresh, missing = event_freshness(sent_users, sent_ts,
                                             (json.loads(f[b"payload"]) for _, f in r.xrange(stream_key(prefix))))
            users = sum(1 for _ in r.scan_iter(recs_key(prefix, "*"), count=1000))
            result = DemoResult(n, seconds, fresh, users)
            console.print(f"\n[bold]{n:,} events[/] learned in {seconds:.1f} s: [bold]{n / seconds:,.0f} events/s[/] "
                          f"end to end (Tansu -> worker -> Redis), {users} users with recommendations")
            console.print(f"freshness (event sent -> recommendations in Redis): p50 {np.percentile(fresh, 50):.0f} ms, "
                          f"p99 {np.percentile(fresh, 99):.0f} ms over {len(fresh):,} events ({missing} without an "
                          f"update; the replay sends as fast as it can, so this includes queueing; "
                          f"bench/stream_throughput.py measures a fixed rate)")
            if keep_running:
                _print_how_to_query(console, r, prefix, base.redis_url, metrics_port, servers, workdir)
                servers = []
            return result
        except Exception:
            failed = True
            raise
        finally:
            for server in reversed(servers):
                server.stop(timeout=30)
            if external and not keep_running:
                try:
                    deleted = asyncio.run(delete_topics(base.broker_list, f"{run_id}-"))
                    console.print(f"deleted the demo's {len(deleted)} topics ({run_id}-*) from {base.kafka_bootstrap}")
                except Exception as exc:  # noqa: BLE001 - report, and never hide what failed before
                    console.print(f"[red]could not delete the demo's topics {run_id}-* (delete them by hand): {exc!r}")
            if not keep_running and r is not None:
                with contextlib.suppress(Exception):  # Redis may be what failed
                    keys = list(r.scan_iter(key_pattern(prefix), count=1000))
                    if keys:
                        r.delete(*keys)
            if not (keep_running or failed):
                shutil.rmtree(workdir, ignore_errors=True)


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

