"""``polyrec eval``: tune on the warm-up, replay a MovieLens data set through every model, report."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.datasets.movielens import DATASETS, MAPPING, movielens_replay
from polyrec.evaluation import throughput, tuning
from polyrec.evaluation.baselines import ImplicitALS, ItemKNN, Polyrec, Popularity
from polyrec.evaluation.confidence import paired_difference, user_bootstrap
from polyrec.evaluation.protocol import ModelResult, Replay, run_prequential
from polyrec.events import DEFAULT_WEIGHTS
from polyrec.explore import ExploreConfig
from polyrec.mf import MFConfig
from polyrec_cli.evaluation import report

# the peers polyrec must beat; the ablations are polyrec's own parts, reported for information
PEERS = ("popularity", "popularity-recent", "river-biasedmf", "als-foldin-trained-users", "als-foldin",
         "item-knn", "item-knn-recent")
ABLATIONS = ("polyrec-factors-only", "polyrec-cooccurrence-only", "polyrec-no-promotion", "polyrec-no-young")
MARGIN = 1.05  # polyrec / best peer, for recall@10 and NDCG@10 alike


def output_paths(out_dir: Path, dataset: str) -> tuple[Path, Path]:
    """Where a run on ``dataset`` writes its JSON and plot."""
    stem = "prequential" if dataset == "ml-100k" else f"prequential-{dataset}"
    return out_dir / f"{stem}.json", out_dir / f"{stem}.png"


def _models(tuned: dict[str, dict], dim: int) -> list:
    c = {fam: t["chosen"] for fam, t in tuned.items()}
    cooccurrence, young = CooccurrenceConfig(**c["polyrec"]), ConsumersConfig()
    return [
        Popularity(),
        Popularity(name="popularity-recent", **c["popularity-recent"]),
        tuning.river("river-biasedmf", dim, **c["river-biasedmf"]),
        ImplicitALS(fold_in="trained", **c["als-foldin-trained-users"]),
        ImplicitALS(fold_in="all", **c["als-foldin"]),
        ItemKNN(**c["item-knn"]),
        ItemKNN(name="item-knn-recent", **c["item-knn-recent"]),
        Polyrec(MFConfig(dim=dim), cooccurrence, young, explore=ExploreConfig()),  # the worker's defaults
        Polyrec(MFConfig(dim=dim), None, name="polyrec-factors-only"),
        Polyrec(MFConfig(dim=dim), CooccurrenceConfig(**{**c["polyrec"], "mf_weight": 0.0}),
                name="polyrec-cooccurrence-only"),
        Polyrec(MFConfig(dim=dim), cooccurrence, young, name="polyrec-no-promotion"),
        Polyrec(MFConfig(dim=dim), cooccurrence, None, name="polyrec-no-young"),
    ]


def comparison(results: list[ModelResult], resamples: int) -> dict:
    """Confidence intervals of every model, and polyrec against the best peer on each measure."""
    users = np.concatenate(results[0].users)
    values = {m: {r.name: np.concatenate(getattr(r, m)) for r in results} for m in ("hits", "ndcg")}
    out: dict = {"bootstrap": f"over users ({resamples} resamples): each draws the users with replacement and "
                              "averages over all their scored events; percentile 95% intervals",
                 "intervals": {}, "against_best_peer": {}}
    for measure, key in (("recall@10", "hits"), ("ndcg@10", "ndcg")):
        out["intervals"][measure] = user_bootstrap(values[key], users, resamples=resamples)
        best = max(PEERS, key=lambda name: values[key][name].mean())
        ours = values[key]["polyrec"]
        out["against_best_peer"][measure] = {
            "best_peer": best, "ratio": float(ours.mean() / max(values[key][best].mean(), 1e-12)),
            "difference": paired_difference(ours, values[key][best], users, resamples=resamples)}
    return out


def run(out_dir: Path, *, dataset: str = "ml-100k", dim: int = 32, warmup_frac: float = 0.1,
        sweep: tuple[int, ...] = (1, 10, 100), limit: int | None = None, repeats: int = 5, sample_every: int = 1,
        resamples: int = 2000) -> dict:
    """Run the whole evaluation; write its JSON and plot (:func:`output_paths`)."""
    started = time.perf_counter()
    replay = movielens_replay(limit, source=DATASETS[dataset])
    warm_n = int(len(replay) * warmup_frac)
    tp, tuned, runs = _measure(replay, warm_n, dim=dim, sweep=sweep, repeats=repeats, sample_every=sample_every)
    result = _result(dataset, replay, warm_n, dim, sample_every, tp, tuned, runs, resamples)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    json_path, png_path = output_paths(out_dir, dataset)
    report.write_json(result, json_path)
    report.plot(runs[sweep[0]], result, png_path)
    return result


def _measure(replay: Replay, warm_n: int, *, dim: int, sweep: tuple[int, ...], repeats: int,
             sample_every: int) -> tuple[dict, dict, dict[int, list[ModelResult]]]:
    """The learning throughput, the tuning on the warm-up, and one prequential replay of every model
    per batch size of ``sweep``, with progress bars."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    warm = Replay(replay.users[:warm_n], replay.items[:warm_n], replay.events[:warm_n], replay.weights[:warm_n])
    columns = (TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        # throughput first, in a fresh process: the replays below leave a heap full of models
        t = bar.add_task("learning throughput", total=repeats)
        default = CooccurrenceConfig()  # what a worker runs unless told otherwise
        tp = throughput.measure(replay, MFConfig(dim=dim), default, river_lr=0.02, repeats=repeats,
                                progress=lambda n: bar.advance(t, n))
        tp["cooccurrence"] = asdict(default)
        t = bar.add_task("tuning on the warm-up", total=warm_n)
        tuned = tuning.tune(warm, dim, sample_every=sample_every, progress=lambda n: bar.advance(t, n))
        runs: dict[int, list[ModelResult]] = {}
        for b in sweep:
            t = bar.add_task(f"prequential replay, batch {b}", total=len(replay))
            runs[b] = run_prequential(replay, _models(tuned, dim), batch_size=b, warmup=warm_n,
                                      sample_every=sample_every, progress=lambda n, t=t: bar.advance(t, n))
    return tp, tuned, runs


def _result(dataset: str, replay: Replay, warm_n: int, dim: int, sample_every: int, tp: dict, tuned: dict,
            runs: dict[int, list[ModelResult]], resamples: int) -> dict:
    """The run's JSON: the protocol, every model's measures, the tuning, the intervals, the sweep, the
    throughput and the acceptance checks."""
    sweep = list(runs)
    cooccurrence = CooccurrenceConfig(**tuned["polyrec"]["chosen"])
    main = runs[sweep[0]]
    compared = comparison(main, resamples)
    best = compared["against_best_peer"]
    return {
        "dataset": {"key": dataset, "name": DATASETS[dataset].name, "events": len(replay),
                    "mapping": MAPPING, "weights": DEFAULT_WEIGHTS,
                    "order": "timestamp, file order as tie-break"},
        "protocol": {"k": 10, "batch_size": sweep[0], "warmup_events": warm_n, "sample_every": sample_every,
                     "scored": "click and purchase events after the warm-up, scored before they are learned",
                     "candidates": "every item seen before the batch, minus the user's seen items"},
        "models": {r.name: r.summary() for r in main},
        "peers": list(PEERS),
        "ablations": list(ABLATIONS),
        "polyrec_config": {"mf": asdict(MFConfig(dim=dim)), "cooccurrence": asdict(cooccurrence),
                           "young": asdict(ConsumersConfig()),
                           "worker_defaults_are_this_choice": cooccurrence == CooccurrenceConfig()},
        "tuning": tuned,
        "confidence": compared,
        "batch_size_sweep": {str(b): {r.name: {k: r.summary()[k] for k in ("recall@10", "ndcg@10")} for r in rs}
                             for b, rs in runs.items()},
        "throughput": tp,
        "acceptance": {
            **{f"polyrec / best peer ({best[m]['best_peer']}) {m}": report.check(best[m]["ratio"], MARGIN)
               for m in ("recall@10", "ndcg@10")},
            **{f"polyrec - {best[m]['best_peer']} {m}, 95% interval low end": report.check(
                best[m]["difference"]["low"], 0.0, strict=True) for m in ("recall@10", "ndcg@10")},
            "polyrec learn + top-10 / river learn_one": report.check(
                tp["ratio_to_river_learn_one"]["polyrec_learn_and_top10"], 3.0),
        },
    }
