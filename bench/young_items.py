"""Young items (polyrec/consumers.py, polyrec/explore.py): what their scoring and their promotion
buy new items, what they cost overall.

Two replays of a MovieLens data set through polyrec's model as the worker runs it (factors and
co-occurrence memory at the worker's defaults), with young-item scoring off, at several ``shrink``
values, and at the default shrink with young new items promoted at several ``reach`` values (no
text start, no exploration of fresh items: the promotion alone):

* **cold start**: the protocol of ``polyrec eval --cold-start`` (a seeded 20% of the items are new,
  each announced ``ANNOUNCE`` events before its first event; every click or purchase among a new
  item's first 20 events after a 10% warm-up is scored before it is learned; the JSON has the whole
  stream's numbers too), with new-item popularity as the reference;
* **overall**: the prequential protocol of ``polyrec eval`` (the same warm-up, every ``--sample-every``-th
  click or purchase after it scored).

Both at micro-batches of ``--batch`` events. Medians are not needed: the replays are deterministic.
``--split validation`` replays the cold-start evaluation's validation split instead (the stream
without the test's new items, another 20% of items new): where the defaults are chosen.

    python bench/young_items.py [--dataset ml-1m] [--shrink 2 5 10] [--reach 20 30 50 100]
                                [--sample-every 3] [--split validation]

Writes ``results/young_items-<dataset>[-validation].json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.datasets.movielens import DATASETS, movielens_replay
from polyrec.evaluation.baselines import Popularity
from polyrec.evaluation.coldstart import (
    ANNOUNCE,
    ColdStartMF,
    cold_start_summaries,
    first_events,
    holdout_items,
    validation_split,
    warmup_events,
)
from polyrec.evaluation.protocol import run_prequential
from polyrec.explore import ExploreConfig
from polyrec.mf import MFConfig

NEW_SHARE, FIRST, SEED = 0.2, 20, 0


def _models(shrinks: list[float], reaches: list[int], new: np.ndarray) -> list[ColdStartMF]:
    """The worker's model without young-item scoring, then with it at each ``shrink``, then at the
    default shrink with the young ones of the ``new`` items promoted at each ``reach``."""
    memory = CooccurrenceConfig()
    off = ColdStartMF(MFConfig(), new, name="off", cooccurrence=memory)
    scored = [ColdStartMF(MFConfig(), new, name=f"shrink {s:g}", cooccurrence=memory,
                          consumers=ConsumersConfig(young=ConsumersConfig.young, shrink=s)) for s in shrinks]
    promoted = [ColdStartMF(MFConfig(), new, name=f"reach {r}", cooccurrence=memory, consumers=ConsumersConfig(),
                            explore=ExploreConfig(fit=0.0, reach=r)) for r in reaches]
    return [off, *scored, *promoted]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=list(DATASETS), default="ml-100k")
    ap.add_argument("--shrink", type=float, nargs="+", default=[2.0, ConsumersConfig.shrink, 10.0])
    ap.add_argument("--reach", type=int, nargs="*", default=[20, 30, 50, 100])
    ap.add_argument("--split", choices=("test", "validation"), default="test")
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--sample-every", type=int, default=3)
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    replay = movielens_replay(None, source=DATASETS[args.dataset])
    new = holdout_items(replay.items, NEW_SHARE, SEED)
    if args.split == "validation":
        replay, new = validation_split(replay, new, NEW_SHARE, SEED)
    mask = first_events(replay.items, new, FIRST)
    t0 = time.perf_counter()
    cold = run_prequential(replay, [Popularity(name="new-item-popularity", only=new),
                                    *_models(args.shrink, args.reach, new)],
                           batch_size=args.batch, announce=ANNOUNCE, score_mask=mask)
    cold_s = time.perf_counter() - t0
    overall = run_prequential(replay, _models(args.shrink, args.reach, new), batch_size=args.batch,
                              warmup=warmup_events(len(replay)),
                              sample_every=args.sample_every)
    result = {
        "dataset": args.dataset, "split": args.split, "events": len(replay), "batch_size": args.batch,
        "new_items": len(new),
        "young": ConsumersConfig.young, "cooccurrence": asdict(CooccurrenceConfig()),
        "cold_start": cold_start_summaries(cold, replay, new, FIRST),
        "overall": {r.name: r.summary() for r in overall}, "overall_sample_every": args.sample_every,
        "seconds": {"cold_start": round(cold_s, 1), "overall": round(time.perf_counter() - t0 - cold_s, 1)},
    }
    suffix = "-validation" if args.split == "validation" else ""
    out = Path(args.out) / f"young_items-{args.dataset}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    _print(result)
    print(f"wrote {out}")


def _print(result: dict) -> None:
    cold, overall = result["cold_start"], result["overall"]
    off_cold, off_all = cold["off"]["recall@10"], overall["off"]["recall@10"]
    buckets = list(cold["off"]["recall@10_by_event"])
    print(f"{result['dataset']} ({result['split']}): {result['new_items']} new items, "
          f"batches of {result['batch_size']}")
    print(f"{'model':<22}{'cold r@10':>10}{'x off':>7}" + "".join(f"{'ev ' + b:>9}" for b in buckets)
          + f"{'overall r@10':>14}{'vs off':>8}")
    for name, row in cold.items():
        tail = (f"{overall[name]['recall@10']:>14.4f}{overall[name]['recall@10'] / off_all - 1:>+8.1%}"
                if name in overall else "")
        print(f"{name:<22}{row['recall@10']:>10.4f}{row['recall@10'] / off_cold:>7.2f}"
              + "".join(f"{row['recall@10_by_event'][b]:>9.4f}" for b in buckets) + tail)


if __name__ == "__main__":
    main()
