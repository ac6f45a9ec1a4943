"""End-to-end throughput and freshness of one worker, against two ceilings, in one run.

On the same pre-filled ``events`` topic (MovieLens-100K events, 4 partitions, a real Tansu
broker), each contender consumes everything with a fresh consumer group:

* ``raw_aiokafka``: a plain aiokafka consumer decoding JSON (the raw ceiling);
* ``noop_faust``: a no-op Faust agent over ``stream.take`` (the framework ceiling);
* ``polyrec``: a real worker (validate, learn, persist state, write Redis);
* ``polyrec_asyncio``: the same worker on asyncio's default event loop instead of uvloop;
* ``polyrec_x2``: two workers in one group (two partitions each, the item factors shared through
  their compacted topic), the span counted only while both hold partitions. For it and for
  ``polyrec``, the workers then drain the rest, stop, and the item-factor topic's event count of
  every item is checked against the events produced (the results of two workers equal one's);
* ``polyrec[VAR=VALUE]`` (with ``--variant VAR=VALUE[,VAR=VALUE]``, repeatable): the worker with
  those environment variables set, to measure settings against the defaults in one run;
* ``polyrec@REV`` (with ``--baseline REV``, which may be given more than once): the worker of an
  earlier commit, from a temporary git worktree, on the same venv, so that a change's cost is
  measured against it in one run.

The no-op agent and ``polyrec`` run on the worker's default loop (``POLYREC_EVENT_LOOP``, uvloop).

Rates are measured between 10% and 90% of the events (ramp-up and tail excluded), and over the
same span each Faust process's CPU use (``process_cpu_seconds_total``, all threads), mean
micro-batch size and (workers) item-factor records written per event; each contender runs
``--repeats`` times and the median is reported, with ratios between them. Then
freshness: events produced at a fixed rate, with ``ts`` = send time; each event's delay runs to
the first write of its user's recommendations that had learned it (``polyrec/evaluation/freshness.py``),
p50/p99 over all events. Writes results/stream_bench.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polyrec.datasets.movielens import load_interactions  # noqa: E402
from polyrec.evaluation.freshness import event_freshness  # noqa: E402
from polyrec_cli.devservers import LocalServer, ensure_redis, free_port, start_tansu  # noqa: E402
from polyrec_cli.harness import WorkerProcess, event_record, item_counts, read_topic, send_records  # noqa: E402
from stream.metrics import scrape_totals  # noqa: E402
from stream.recs import key_pattern, stream_key  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _events_total(port: int) -> float:
    return scrape_totals(port).get("polyrec_events_total", 0.0)


ORDERS = ("time", "interleaved")
PARTITIONS = 4  # of the bench's events topic (POLYREC_PARTITIONS' default)


def event_order(users: np.ndarray, order: str) -> np.ndarray:
    """Indices of the events in replay order. ``time``: MovieLens's own (by timestamp), where a
    user rates many films in one sitting, so a micro-batch holds few users. ``interleaved``: each
    user's events in their order, users taken in turn (their 1st events, then their 2nd, ...), so
    consecutive events are of different users, as in traffic from many users at once: the case
    where every event of a batch changes a user state of its own."""
    if order == "time":
        return np.arange(len(users))
    _, first, inverse = np.unique(users, return_index=True, return_inverse=True)
    by_user = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse)
    rank = np.empty(len(users), np.int64)
    rank[by_user] = np.arange(len(users)) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.lexsort((first[inverse], rank))


async def _fill(bootstrap: str, topic: str, n: int, rate: float | None = None,
                order: str = "time") -> tuple[list[str], list[str], list[int]]:
    """Produce ``n`` events (``rate`` per second, or as fast as possible) in ``order``
    (:func:`event_order`); returns their users, items and ``ts``."""
    x = load_interactions()
    sequence = event_order(x.users, order)
    users, items, stamps = [], [], []

    def records():
        for k in range(n):
            m = sequence[k % len(x)]
            users.append(x.users[m])
            items.append(x.items[m])
            stamps.append(int(time.time() * 1000))
            yield event_record(x.users[m], x.items[m], x.events[m], ts=stamps[-1])

    await send_records(bootstrap, topic, records(), rate=rate)
    return users, items, stamps


# what a worker writes per event, from its counters (an older worker may lack some: None)
PER_EVENT = {"item_records": "item_records_written", "user_states": "user_states_written",
             "changelog_bytes": "user_state_bytes"}


def _rate_from_counter(workers: list[tuple[int, subprocess.Popen]], n: int, timeout: float,
                       consuming: Callable[[], bool] = lambda: True) -> tuple[float, dict]:
    """Events/s between 10% and 90% of ``n``, summed over the ``(metrics port, process)`` of
    ``workers`` (one group), and over the same span their CPU use (cores, all threads), mean
    micro-batch size and what they wrote per event (where they export it). The span starts only
    once ``consuming()`` holds (for a group: every worker holds partitions)."""
    lo, hi, first = 0.1 * n, 0.9 * n, None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, proc in workers:
            if proc.poll() is not None:
                raise RuntimeError(f"contender exited with {proc.returncode}")
        each, now = [scrape_totals(port) for port, _ in workers], time.perf_counter()
        m = {k: sum(w.get(k, 0.0) for w in each) for k in set().union(*each)}
        done = m.get("polyrec_events_total", 0.0)
        if first is None and done >= hi:
            raise RuntimeError(f"10-90% of {n} events went by before the span could start: use more --events")
        if first is None and done >= lo and consuming():
            first = (now, m, each)
        elif first is not None and done >= hi:
            t0, m0, each0 = first
            d = {k: v - m0.get(k, 0.0) for k, v in m.items()}
            batches = d.get("polyrec_batch_size_events_count", 0.0)
            return d["polyrec_events_total"] / (now - t0), {
                "cpu_cores": d.get("process_cpu_seconds_total", float("nan")) / (now - t0),
                "batch_events": d["polyrec_batch_size_events_sum"] / batches if batches else None,
                "events_share": [(w.get("polyrec_events_total", 0.0) - w0.get("polyrec_events_total", 0.0))
                                 / d["polyrec_events_total"] for w, w0 in zip(each, each0)],
                **{f"{name}_per_event": (d[f"polyrec_{metric}_total"] / d["polyrec_events_total"]
                                         if f"polyrec_{metric}_total" in d else None)
                   for name, metric in PER_EVENT.items()}}
        time.sleep(0.25)  # each scrape costs the contender CPU: poll gently
    raise TimeoutError(f"only {sum(_events_total(port) for port, _ in workers):.0f} of {n} events "
                       f"within {timeout:.0f} s")


STOP_TIMEOUT_S = 30  # a contender's graceful shutdown, then SIGKILL


def noop_agent(bootstrap: str, topic: str, app_id: str, port: int) -> LocalServer:
    """Start a no-op Faust agent on ``topic``, its metrics on ``port``; ``stop()`` ends it and removes
    its data folder."""
    data = tempfile.mkdtemp(prefix="polyrec-bench-noop-")
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, BENCH_APP_ID=app_id, BENCH_TOPIC=topic,
               BENCH_METRICS_PORT=str(port), BENCH_DATA_DIR=data)
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "noop_faust.py"), "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return LocalServer("noop", f"127.0.0.1:{port}", proc, data)


def polyrec_worker(bootstrap: str, topic: str, app_id: str, port: int, root: Path = ROOT,
                   **env: str) -> WorkerProcess:
    """Start a polyrec worker (the code under ``root``) on ``topic``, its metrics on ``port``; ``env``
    adds variables. ``stop()`` ends it and removes its data folder."""
    data = tempfile.mkdtemp(prefix="polyrec-bench-polyrec-")
    env = dict(os.environ, KAFKA_BOOTSTRAP=bootstrap, POLYREC_APP_ID=app_id, POLYREC_REDIS_PREFIX=app_id,
               POLYREC_EVENTS_TOPIC=topic, POLYREC_DATA_DIR=data, **env)
    return WorkerProcess(env, cwd=root, loglevel="warn", workdir=data, metrics_port=port).start()


def run_noop(bootstrap: str, topic: str, n: int, tag: str) -> tuple[float, dict]:
    port = free_port()
    noop = noop_agent(bootstrap, topic, f"noop-{tag}", port)
    try:
        return _rate_from_counter([(port, noop.proc)], n, timeout=600)
    finally:
        noop.stop(timeout=STOP_TIMEOUT_S)


def run_polyrec(bootstrap: str, redis_url: str, topic: str, n: int, tag: str, loop: str = "uvloop",
                root: Path = ROOT, workers: int = 1, expected: Counter | None = None,
                env: dict[str, str] | None = None) -> tuple[float, dict]:
    """The rate of ``workers`` polyrec workers in one group (see :func:`_rate_from_counter`), ``env``
    added to their environment. With
    ``expected`` (events per item in the topic), they then drain the rest and stop, and the stats
    say whether the item-factor topic's event counts are exactly those (``item_counts_equal``) and
    how many items each worker knew (``items_known``)."""
    app_id = f"bench-{tag}"
    ports = [free_port() for _ in range(workers)]
    env = {"REDIS_URL": redis_url, "POLYREC_EVENT_LOOP": loop, **(env or {})}
    group = [polyrec_worker(bootstrap, topic, app_id, port, root, **env) for port in ports]

    def consuming() -> bool:  # every worker holds partitions, and between them all of them
        held = [w.assigned() for w in group]
        return all(held) and sum(map(len, held)) == len(set().union(*held)) == PARTITIONS

    try:
        rate, stats = _rate_from_counter([(port, w.proc) for port, w in zip(ports, group)], n, timeout=900,
                                         consuming=consuming if workers > 1 else lambda: True)
        if expected is not None:
            deadline = time.monotonic() + 120
            while sum(map(_events_total, ports)) < n and time.monotonic() < deadline:
                time.sleep(0.25)
            stats["items_known"] = [scrape_totals(port).get("polyrec_items_known") for port in ports]
    finally:
        for w in group:
            w.stop(timeout=STOP_TIMEOUT_S)  # a graceful stop writes the last item contributions
        _clean_redis(redis_url, app_id)
    if expected is not None:
        records = asyncio.run(read_topic(bootstrap, f"{app_id}-item-factors", timeout=60))
        stats["item_counts_equal"] = item_counts(records) == expected
    return rate, stats


async def raw_consumer_rate(bootstrap: str, topic: str, n: int, lo: float = 0.1, hi: float = 0.9) -> float:
    """Events/s of a plain aiokafka consumer that only decodes the JSON of ``topic`` (all partitions,
    from the start), between ``lo`` and ``hi`` of its ``n`` events (``lo`` 0: from the first fetch)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        done, t_lo, c_lo = 0, (time.perf_counter() if lo == 0 else None), 0
        while done < hi * n:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in records:
                    json.loads(r.value)
                done += len(records)
            if t_lo is None and done >= lo * n:
                t_lo, c_lo = time.perf_counter(), done
        return (done - c_lo) / (time.perf_counter() - t_lo)
    finally:
        await consumer.stop()


def _clean_redis(url: str, prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(url)
    keys = list(r.scan_iter(key_pattern(prefix), count=1000))
    if keys:
        r.delete(*keys)


def freshness(bootstrap: str, redis_url: str, rate: float, seconds: float) -> dict:
    import redis

    topic = "events-fresh"
    asyncio.run(ensure_topics(Settings(kafka_bootstrap=bootstrap, events_topic=topic)))
    port = free_port()
    worker = polyrec_worker(bootstrap, topic, "bench-fresh", port, REDIS_URL=redis_url, POLYREC_EVENT_LOOP="uvloop")
    try:
        while _events_total(port) == 0 and worker.proc.poll() is None:  # warm up and wait for assignment
            asyncio.run(_fill(bootstrap, topic, 200))
            time.sleep(2)
        r, feed = redis.Redis.from_url(redis_url), stream_key("bench-fresh")
        start_id = r.xinfo_stream(feed)["last-generated-id"] if r.exists(feed) else "0"
        t0 = time.perf_counter()
        users, _, stamps = asyncio.run(_fill(bootstrap, topic, int(rate * seconds), rate=rate))
        produced_rate = len(users) / (time.perf_counter() - t0)
        time.sleep(2)
        start = start_id.decode() if isinstance(start_id, bytes) else start_id
        updates = [json.loads(f[b"payload"]) for _, f in r.xrange(feed, min=f"({start}")]
        lat, missing = event_freshness(users, stamps, updates)
        return {"rate_events_per_s": rate, "produced_events_per_s": produced_rate, "seconds": seconds,
                "events": len(users), "events_without_update": missing, "updates": len(updates),
                "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "max_ms": float(lat.max())}
    finally:
        worker.stop(timeout=STOP_TIMEOUT_S)
        _clean_redis(redis_url, "bench-fresh")


def _worktree(rev: str) -> Path:
    """A detached git worktree of ``rev`` in a temporary folder (removed at the end of the run)."""
    path = Path(tempfile.mkdtemp(prefix="polyrec-baseline-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", str(path), rev], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2000.0, help="produce rate of the freshness run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the freshness run")
    parser.add_argument("--freshness-only", action="store_true", help="skip the throughput runs (quick check)")
    parser.add_argument("--baseline", metavar="REV", action="append", default=[],
                        help="also run the worker of git revision REV (e.g. main~3) in the same run; repeatable")
    parser.add_argument("--variant", metavar="VAR=VALUE[,VAR=VALUE]", action="append", default=[],
                        help="also run the worker with these environment variables set (e.g. "
                             "POLYREC_COMMIT_INTERVAL_S=3) in the same run; repeatable")
    parser.add_argument("--order", choices=ORDERS, default="time",
                        help="event order of the replayed stream (see event_order); freshness keeps time order")
    parser.add_argument("--out", default="results/stream_bench.json")
    args = parser.parse_args()
    baselines = {rev: _worktree(rev) for rev in args.baseline}
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    tansu, redis_server = start_tansu(), ensure_redis(redis_url)
    try:
        topic = "events-bench"
        asyncio.run(ensure_topics(Settings(kafka_bootstrap=tansu.address, events_topic=topic)))
        _, items, _ = asyncio.run(_fill(tansu.address, topic, args.events, order=args.order))
        expected = Counter(map(str, items))  # events per item, for the one worker and the pair
        if args.freshness_only:
            fresh = freshness(tansu.address, redis_url, args.rate, args.seconds)
            print(json.dumps(fresh))
            return
        processes = {  # contenders in a process of their own, each run given a tag
            "noop_faust": lambda tag: run_noop(tansu.address, topic, args.events, tag),
            "polyrec": lambda tag: run_polyrec(tansu.address, redis_url, topic, args.events, tag, expected=expected),
            "polyrec_x2": lambda tag: run_polyrec(tansu.address, redis_url, topic, args.events, f"{tag}-x2",
                                                  workers=2, expected=expected),
            "polyrec_asyncio": lambda tag: run_polyrec(tansu.address, redis_url, topic, args.events, f"{tag}-aio",
                                                       loop="asyncio"),
        }
        for v, variant in enumerate(args.variant):
            env = dict(assignment.split("=", 1) for assignment in variant.split(","))
            processes[f"polyrec[{variant}]"] = lambda tag, v=v, env=env: run_polyrec(
                tansu.address, redis_url, topic, args.events, f"{tag}-variant{v}", env=env)
        for rev, tree in baselines.items():
            processes[f"polyrec@{rev}"] = lambda tag, rev=rev, tree=tree: run_polyrec(
                tansu.address, redis_url, topic, args.events, f"{tag}-{rev}", root=tree)
        runs: dict[str, list[float]] = {"raw_aiokafka": [], **{k: [] for k in processes}}
        stats: dict[str, list[dict]] = {k: [] for k in processes}
        for rep in range(args.repeats):
            runs["raw_aiokafka"].append(asyncio.run(raw_consumer_rate(tansu.address, topic, args.events)))
            for name, run in processes.items():
                rate, st = run(str(rep))
                runs[name].append(rate)
                stats[name].append(st)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()), flush=True)
        med = {k: float(np.median(v)) for k, v in runs.items()}
        cores = {k: float(np.median([st["cpu_cores"] for st in v])) for k, v in stats.items()}
        fresh = freshness(tansu.address, redis_url, args.rate, args.seconds)
        item_records = float(np.median([st["item_records_per_event"] for st in stats["polyrec"]]))
    finally:
        tansu.stop()
        redis_server.stop()
        for tree in baselines.values():
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=False)
            shutil.rmtree(tree.parent, ignore_errors=True)  # the temporary folder it was made in
    compared = [k for k in runs if k.startswith(("polyrec@", "polyrec["))]  # variants and baselines
    result = {
        "events": args.events, "order": args.order, "repeats": args.repeats, "partitions": PARTITIONS,
        "broker": "Tansu 0.6.0 (in memory)", "variants": args.variant,
        "events_per_s_runs": runs, "events_per_s_median": med, "process_stats_runs": stats,
        "cpu_cores_median": cores,
        "cpu_us_per_event_median": {k: 1e6 * cores[k] / med[k] for k in cores},
        "ratios": {"polyrec / noop_faust": med["polyrec"] / med["noop_faust"],
                   "polyrec / raw_aiokafka": med["polyrec"] / med["raw_aiokafka"],
                   "noop_faust / raw_aiokafka": med["noop_faust"] / med["raw_aiokafka"],
                   "polyrec (uvloop) / polyrec_asyncio": med["polyrec"] / med["polyrec_asyncio"],
                   "polyrec_x2 / polyrec": med["polyrec_x2"] / med["polyrec"],
                   "polyrec_x2 / polyrec, per repeat": [a / b for a, b in zip(runs["polyrec_x2"], runs["polyrec"])],
                   **{f"polyrec / {k}": med["polyrec"] / med[k] for k in compared},
                   **{f"polyrec / {k}, per repeat": [a / b for a, b in zip(runs["polyrec"], runs[k])]
                      for k in compared}},
        "freshness": fresh,
        "targets": {"polyrec >= 10000 events/s": med["polyrec"] >= 10_000,
                    "polyrec >= 0.8 x noop_faust": med["polyrec"] >= 0.8 * med["noop_faust"],
                    "polyrec item records per event <= 0.2": item_records <= 0.2,
                    "freshness p99 < 250 ms at the fixed rate": fresh["p99_ms"] < 250,
                    "two workers >= 1.6 x one worker": med["polyrec_x2"] >= 1.6 * med["polyrec"],
                    "every item count of one worker and of two = the topic's": all(
                        st["item_counts_equal"] for k in ("polyrec", "polyrec_x2") for st in stats[k])},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.events:,} events in {args.order} order, median of {args.repeats}")
    for col in ("contender", "events/s", "x no-op Faust", "x raw aiokafka", "CPU cores", "CPU µs/event"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    for name, v in med.items():
        cpu = (f"{cores[name]:.2f}", f"{1e6 * cores[name] / v:.0f}") if name in cores else ("-", "-")
        table.add_row(name, f"{v:,.0f}", f"{v / med['noop_faust']:.2f}", f"{v / med['raw_aiokafka']:.3f}", *cpu)
    console = Console(width=max(Console().width, 110))
    console.print(table)
    for name in PER_EVENT:
        written = {k: float(np.median([st[f"{name}_per_event"] for st in v]))
                   for k, v in stats.items() if all(st.get(f"{name}_per_event") is not None for st in v)}
        console.print(f"{name.replace('_', ' ')} written per event (median): "
                      + ", ".join(f"{k} {v:,.2f}" for k, v in written.items()))
    console.print(f"freshness at {fresh['rate_events_per_s']:,.0f} events/s for {fresh['seconds']:.0f} s: "
                  f"p50 {fresh['p50_ms']:.0f} ms, p99 {fresh['p99_ms']:.0f} ms over {fresh['events']:,} events "
                  f"({fresh['events_without_update']} without an update; produced at "
                  f"{fresh['produced_events_per_s']:,.0f}/s)")
    for name in ("polyrec", "polyrec_x2"):
        console.print(f"{name}: items known per worker (each repeat) "
                      f"{[st['items_known'] for st in stats[name]]}, item-factor counts equal to the topic's "
                      f"{[st['item_counts_equal'] for st in stats[name]]}, events share per worker "
                      f"{[[round(x, 2) for x in st['events_share']] for st in stats[name]]}")
    for name, ok in result["targets"].items():
        console.print(f"[{'green' if ok else 'red'}]{'met' if ok else 'MISSED'}[/] {name}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
