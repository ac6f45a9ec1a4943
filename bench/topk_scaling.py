"""What a batch's top-K costs as the catalogue grows, and what running it off the event loop buys.

For catalogues of each ``--items`` size (dim ``--dim``), one batch of ``--users`` distinct users
is learned by a ``WorkerModel``, and its top-K job (``RecsJob.run``: score every item, mask the
users' seen items, top-K) is timed. Peers measured in the same run:
* the smallest catalogue: ratios to it say how the cost scales on this machine (the absolute
  times do not travel);
* the job run *inline* on an event loop versus in a thread, as the worker runs it (its own
  one-thread pool):
  the largest gap between the ticks of a 1 ms ticker task on the loop while the job runs, i.e.
  how long everything else on the worker's loop (other partitions, Redis, the HTTP endpoints)
  waits;
* the job with ``--young`` of the catalogue young (scored from their own factors), once without and
  once with their promotion at the worker's default reach (``polyrec/explore.py: promote``): what
  the promotion adds to a batch.

    python bench/topk_scaling.py [--items 1682 10000 100000 1000000] [--users 200] [--repeats 5]
                                 [--young 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from polyrec.explore import ExploreConfig
from polyrec.mf import MFConfig
from stream.state import RecsJob, WorkerModel


def batch_job(n_items: int, users: int, seen: int, dim: int, k: int) -> RecsJob:
    """The top-K job of one learned batch: ``seen`` events for each of ``users`` users."""
    model = WorkerModel(MFConfig(dim=dim), history_max=seen, k=k)
    model.mf.add_items([str(i) for i in range(n_items)])
    n = users * seen
    items = np.random.default_rng(0).integers(0, n_items, n).astype(str).tolist()
    return model.process(0, [f"u{i % users}" for i in range(n)], items, np.ones(n, np.float32), np.arange(n),
                         np.zeros(n), {}).recs


def with_young(job: RecsJob, share: float, reach: int) -> RecsJob:
    """``job`` with every ``1 / share``-th item young (scored from its own factors), promoted at
    ``reach`` (0: not promoted)."""
    rows = np.arange(0, len(job.item_factors), max(1, round(1 / share)))
    return dataclasses.replace(job, young=(rows, job.item_factors[rows].copy()),
                               explore=ExploreConfig(fit=0.0, reach=reach))


async def loop_stall(job: RecsJob, off_loop: bool) -> float:
    """Largest gap (s) between the ticks of a 1 ms ticker on the event loop while ``job`` runs."""
    gaps: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if off_loop:
        with ThreadPoolExecutor(max_workers=1) as pool:
            await asyncio.get_running_loop().run_in_executor(pool, job.run)
    else:
        job.run()
    running = False
    await task
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1682, 10_000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=200, help="distinct users in the batch")
    parser.add_argument("--seen", type=int, default=50, help="seen items per user (masked)")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--young", type=float, default=0.02, help="share of the catalogue young, for the promotion")
    parser.add_argument("--out", type=Path, default=Path("results/topk_scaling.json"))
    a = parser.parse_args()
    rows = []
    for n in sorted(a.items):
        job = batch_job(n, a.users, a.seen, a.dim, a.k)
        young, promoted = with_young(job, a.young, 0), with_young(job, a.young, ExploreConfig.reach)
        times, inline, off, young_s, promoted_s = [], [], [], [], []
        for _ in range(a.repeats):
            for j, out in ((job, times), (young, young_s), (promoted, promoted_s)):
                started = time.perf_counter()
                j.run()
                out.append(time.perf_counter() - started)
            inline.append(asyncio.run(loop_stall(job, off_loop=False)))
            off.append(asyncio.run(loop_stall(job, off_loop=True)))
        rows.append({"items": n, "batch_s_median": statistics.median(times), "batch_s": times,
                     "young_s_median": statistics.median(young_s), "promoted_s_median": statistics.median(promoted_s),
                     "x_promotion": statistics.median(p / y for p, y in zip(promoted_s, young_s)),
                     "ms_per_user": statistics.median(times) / a.users * 1000,
                     "loop_stall_inline_s_median": statistics.median(inline), "loop_stall_inline_s": inline,
                     "loop_stall_off_loop_s_median": statistics.median(off), "loop_stall_off_loop_s": off})
    peer = rows[0]["batch_s_median"]
    for r in rows:
        r["x_smallest"] = r["batch_s_median"] / peer
    result = {"users": a.users, "seen": a.seen, "dim": a.dim, "k": a.k, "repeats": a.repeats, "young": a.young,
              "reach": ExploreConfig.reach, "rows": rows}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2))
    table = Table(title=f"top-K of a batch of {a.users} users (dim {a.dim}, k {a.k}, {a.seen} seen each), "
                        f"medians of {a.repeats}")
    for col in ("items", "batch ms", "ms per user", f"x {rows[0]['items']:,} items", "loop stall ms, inline",
                "loop stall ms, off the loop", f"ms, {a.young:.0%} young", "ms, promoted", "x promotion"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{r['items']:,}", f"{r['batch_s_median'] * 1000:.1f}", f"{r['ms_per_user']:.3f}",
                      f"{r['x_smallest']:.0f}", f"{r['loop_stall_inline_s_median'] * 1000:.1f}",
                      f"{r['loop_stall_off_loop_s_median'] * 1000:.1f}", f"{r['young_s_median'] * 1000:.1f}",
                      f"{r['promoted_s_median'] * 1000:.1f}", f"{r['x_promotion']:.2f}")
    Console().print(table)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
