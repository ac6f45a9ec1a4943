"""The learner's throughput against River's ``learn_one``, without the rest of ``polyrec eval``.

Runs the very measure ``polyrec eval`` reports first (``polyrec.evaluation.throughput.measure``:
micro-batches of 1,000, the worker's default model; polyrec learn, and learn + top-10 of every
touched user, against River's ``BiasedMF.learn_one`` on the same events, each in turn, median of
``--repeats``), on one data set, in minutes instead of the hours an ML-1M evaluation takes. BLAS is
single-threaded, as ``polyrec eval`` sets it (River uses none). To compare two trees, run it in each
(a git worktree) in turn, more than once: the VM's speed moves between minutes.

    python bench/learner_throughput.py [--dataset ml-1m] [--repeats 5]

Writes ``results/learner_throughput[-<dataset>].json`` and prints a table.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: as `polyrec eval` runs it

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from polyrec.cooccurrence import CooccurrenceConfig  # noqa: E402
from polyrec.datasets.movielens import DATASETS, movielens_replay  # noqa: E402
from polyrec.evaluation import throughput  # noqa: E402
from polyrec.mf import MFConfig  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="ml-1m")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    replay = movielens_replay(None, source=DATASETS[args.dataset])
    result = throughput.measure(replay, MFConfig(dim=32), CooccurrenceConfig(), river_lr=0.02,
                                repeats=args.repeats)
    result["dataset"] = args.dataset
    suffix = "" if args.dataset == "ml-100k" else f"-{args.dataset}"
    out = ROOT / "results" / f"learner_throughput{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.dataset}: {result['events']:,} events, batches of {result['batch_size']}, "
                        f"median of {args.repeats}")
    for col in ("contender", "events/s", "runs", "x River learn_one"):
        table.add_column(col, justify="left" if col == "contender" else "right")
    for name, median in result["events_per_s_median"].items():
        runs = result["events_per_s_runs"][name]
        table.add_row(name, f"{median:,.0f}", f"{min(runs):,.0f}-{max(runs):,.0f}",
                      f"{result['ratio_to_river_learn_one'][name]:.2f}")
    Console().print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
