"""How fast a starting worker rebuilds its co-occurrence memory from the events topic.

A worker's ``EventReplica`` reads every partition of ``events`` from the start, validates each
record (``parse_event``) and feeds the valid ones to ``WorkerModel.learn_memory``; its agents wait
for that catch-up before they learn. This bench fills a real Tansu broker with MovieLens events (4
partitions), then times the catch-up of a fresh replica and model, against a plain aiokafka
consumer that only decodes the JSON (the ceiling), in the same run, median of ``--repeats``.

    python bench/memory_catchup.py [--events 200000] [--dataset ml-1m] [--repeats 3]

Writes ``results/memory_catchup.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stream_throughput import raw_consumer_rate  # noqa: E402

from polyrec.datasets.movielens import DATASETS, load_interactions  # noqa: E402
from polyrec_cli.devservers import start_tansu  # noqa: E402
from polyrec_cli.harness import event_record, send_records  # noqa: E402
from stream.replica import EventReplica  # noqa: E402
from stream.settings import Settings  # noqa: E402
from stream.state import WorkerModel  # noqa: E402
from stream.topics import ensure_topics  # noqa: E402


async def fill(bootstrap: str, topic: str, n: int, dataset: str) -> None:
    x = load_interactions(DATASETS[dataset])
    await send_records(bootstrap, topic, (event_record(x.users[k], x.items[k], x.events[k], ts=int(x.ts[k]) * 1000)
                                          for k in range(min(n, len(x)))), linger_ms=20)


async def replica_catchup(bootstrap: str, topic: str) -> tuple[float, int]:
    settings = Settings()
    model = WorkerModel(settings.mf_config(), settings.cooccurrence_config())
    learned = [0]
    replica = EventReplica([bootstrap], topic, model.learn_memory, model.forget_memory,
                           lambda n: learned.__setitem__(0, learned[0] + n))
    task = asyncio.create_task(replica.run())
    t0 = time.perf_counter()
    await replica.wait_caught_up(timeout=None)
    seconds = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return seconds, learned[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ml-1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="results/memory_catchup.json")
    args = parser.parse_args()
    tansu = start_tansu()
    try:
        topic = "events-catchup"
        asyncio.run(ensure_topics(Settings(kafka_bootstrap=tansu.address, events_topic=topic)))
        asyncio.run(fill(tansu.address, topic, args.events, args.dataset))
        runs: dict[str, list[float]] = {"raw_aiokafka_json": [], "event_replica_memory": []}
        learned = 0
        for rep in range(args.repeats):
            whole = raw_consumer_rate(tansu.address, topic, args.events, lo=0.0, hi=1.0)  # start to end, as a start-up
            runs["raw_aiokafka_json"].append(asyncio.run(whole))
            seconds, learned = asyncio.run(replica_catchup(tansu.address, topic))
            runs["event_replica_memory"].append(args.events / seconds)
            print(f"repeat {rep + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in runs.items()), flush=True)
    finally:
        tansu.stop()
    med = {k: float(np.median(v)) for k, v in runs.items()}
    result = {"events": args.events, "dataset": args.dataset, "repeats": args.repeats, "learned": learned,
              "events_per_s_runs": runs, "events_per_s_median": med,
              "ratio": med["event_replica_memory"] / med["raw_aiokafka_json"]}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Rebuilding the co-occurrence memory from {args.events:,} events ({args.dataset}), "
                        f"median of {args.repeats}")
    table.add_column("reader")
    table.add_column("events/s", justify="right")
    table.add_column("seconds per million events", justify="right")
    for name, v in med.items():
        table.add_row(name, f"{v:,.0f}", f"{1e6 / v:.0f}")
    Console().print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
