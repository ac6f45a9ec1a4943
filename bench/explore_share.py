"""The exploration share and audience (``POLYREC_EXPLORE_SHARE``, ``POLYREC_EXPLORE_FIT``): what
giving fresh items a place buys new items and costs everyone, on the cold-start evaluation's
validation split, where their defaults are chosen.

The split of ``polyrec eval --cold-start`` that never holds the test's new items (the stream without
them, another seeded 20% of its items new, ``validation_split``); every item's English text from the
worker's encoder; the projection tuned there as the evaluation tunes it. Contenders: ``random-init``
(no cold-start feature), ``no-explore`` (text start, young items scored and promoted, no fresh item
explored) and the worker's model with fresh items explored in each ``--share`` of lists. Two
replays, at micro-batches of 10 events, new items announced as the evaluation announces them:

* **cold start**: every click or purchase among a new item's first 20 events after a 10% warm-up,
  scored before it is learned (by event number too: exploring can only win a new item's first
  event); the JSON has the whole stream's numbers too;
* **overall**: every ``--sample-every``-th click or purchase after the same warm-up, any item's.

The defaults: among the settings whose overall recall stays within 1% of ``random-init``'s (the
bound of issue 21), the one with the best cold-start recall (on a tie, the better overall).
Deterministic replays: no medians needed.

    python bench/explore_share.py [--share 1 0.5 0.25 0.1] [--fit 0.1] [--sample-every 1]

Writes ``results/explore_share.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from polyrec.datasets.movielens import ML100K, load_movies, movielens_replay  # noqa: E402
from polyrec.datasets.movielens_i18n import TITLES  # noqa: E402
from polyrec.evaluation.coldstart import (  # noqa: E402
    ANNOUNCE,
    ColdStartMF,
    ItemTexts,
    ProjectionSettings,
    cold_start_summaries,
    first_events,
    holdout_items,
    validation_split,
    warmup_events,
)
from polyrec.evaluation.protocol import run_prequential  # noqa: E402
from polyrec.mf import MFConfig  # noqa: E402
from polyrec_cli.evaluation.coldstart_run import (  # noqa: E402
    EXPLORE,
    MEMORY,
    SCORED_EVENTS,
    YOUNG_ITEMS,
    encode,
    tune,
    variant_texts,
)

NEW_SHARE, FIRST, SEED, BATCH, BOUND = 0.2, 20, 0, 10, 0.99


def _models(new: np.ndarray, texts: ItemTexts, settings: ProjectionSettings,
            grid: list[tuple[float, float]]) -> list:
    config = MFConfig()
    return [ColdStartMF(config, new, name="random-init", cooccurrence=MEMORY),
            ColdStartMF(config, new, texts, settings, name="no-explore", cooccurrence=MEMORY, consumers=YOUNG_ITEMS,
                        explore=replace(EXPLORE, fit=0.0)),
            *[ColdStartMF(config, new, texts, settings, name=f"fit {f:g} share {s:g}", cooccurrence=MEMORY,
                          consumers=YOUNG_ITEMS, explore=replace(EXPLORE, fit=f, share=s)) for f, s in grid]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--share", type=float, nargs="+", default=[1.0, 0.5, 0.25, 0.1])
    ap.add_argument("--fit", type=float, nargs="+", default=[EXPLORE.fit])
    ap.add_argument("--sample-every", type=int, default=1)
    ap.add_argument("--out", default="results")
    args = ap.parse_args()
    from encoders.artifacts import open_encoder
    from stream.settings import Settings

    started = time.perf_counter()
    replay, movies = movielens_replay(None, source=ML100K), load_movies(ML100K)
    replayed = {str(i) for i in replay.items}
    ids = [i for i in movies if i in replayed]
    test_new = holdout_items(replay.items, NEW_SHARE, SEED)
    env = Settings.from_env()  # the worker's encoder
    with open_encoder(env.encoder_path, provider=env.encoder_provider, threads=env.encoder_threads,
                      needed_by="bench/explore_share.py") as encoder:
        catalog = encode(encoder, variant_texts(movies, ids, "en", table=TITLES[ML100K.key]), lambda n: None)
    texts = ItemTexts(ids, catalog, ids, catalog)  # as the evaluation's tuning: English texts throughout
    tuned = tune(replay, test_new, texts, MFConfig(), frac=NEW_SHARE, seed=SEED, n_first=FIRST, batch_size=BATCH,
                 progress=lambda n: None)
    settings = ProjectionSettings(**tuned["chosen"])
    val, new = validation_split(replay, test_new, NEW_SHARE, SEED)
    mask = first_events(val.items, new, FIRST)
    grid = [(f, s) for f in args.fit for s in args.share]
    cold = run_prequential(val, _models(new, texts, settings, grid), batch_size=BATCH, announce=ANNOUNCE,
                           scored_events=SCORED_EVENTS, score_mask=mask)
    summaries = cold_start_summaries(cold, val, new, FIRST, SCORED_EVENTS)
    overall = run_prequential(val, _models(new, texts, settings, grid), batch_size=BATCH, announce=ANNOUNCE,
                              warmup=warmup_events(len(val)), sample_every=args.sample_every)
    base = overall[0].summary()["recall@10"]
    within = [(summaries[r.name]["recall@10"], r.summary()["recall@10"], r.name) for r in overall[2:]
              if r.summary()["recall@10"] >= BOUND * base]  # ties on cold start: the cheaper one
    result = {
        "dataset": "ml-100k", "split": "validation", "events": len(val), "new_items": len(new),
        "batch_size": BATCH, "explore": asdict(EXPLORE), "projection": tuned["chosen"],
        "cold_start": summaries,
        "overall": {r.name: r.summary() for r in overall}, "overall_sample_every": args.sample_every,
        "best_within_bound": max(within, default=(None, None, None))[2], "bound": BOUND,
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out) / "explore_share.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    _print(result)
    print(f"wrote {out}")


def _print(result: dict) -> None:
    cold, overall = result["cold_start"], result["overall"]
    c0, o0 = cold["random-init"]["recall@10"], overall["random-init"]["recall@10"]
    print(f"ml-100k (validation): {result['new_items']} new items, batches of {result['batch_size']}")
    print(f"{'model':<20}{'cold r@10':>10}{'x rand':>8}{'ev 1':>8}{'ev 2-5':>8}{'ev 6-20':>9}"
          f"{'overall r@10':>14}{'x rand':>8}")
    for name, row in cold.items():
        ev = row["recall@10_by_event"]
        print(f"{name:<20}{row['recall@10']:>10.4f}{row['recall@10'] / c0:>8.2f}{ev['1']:>8.4f}{ev['2-5']:>8.4f}"
              f"{ev['6-20']:>9.4f}{overall[name]['recall@10']:>14.4f}{overall[name]['recall@10'] / o0:>8.3f}")
    print(f"best cold start with overall recall >= {result['bound']} x random-init: "
          f"{result['best_within_bound']}")


if __name__ == "__main__":
    main()
