"""``polyrec eval``: tune on the warm-up, replay MovieLens-100K through every model, report."""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from polyrec.datasets.movielens import MAPPING, NAME, movielens_replay
from polyrec.evaluation import throughput, tuning
from polyrec.evaluation.baselines import ImplicitALS, PolyrecMF, Popularity
from polyrec.evaluation.protocol import Replay, run_prequential
from polyrec.events import DEFAULT_WEIGHTS
from polyrec.mf import MFConfig
from polyrec_cli.evaluation import report


def _models(tuned: dict[str, dict], dim: int) -> list:
    c = {fam: t["chosen"] for fam, t in tuned.items()}
    return [
        Popularity(),
        Popularity(name="popularity-recent", **c["popularity-recent"]),
        tuning._river("river-biasedmf", dim, **c["river-biasedmf"]),
        ImplicitALS(name="implicit-als", **c["implicit-als"]),
        PolyrecMF(MFConfig(dim=dim, **c["polyrec"]), name="polyrec"),
    ]


def run(out_dir: Path, *, dim: int = 32, warmup_frac: float = 0.1, sweep: tuple[int, ...] = (1, 10, 100),
        limit: int | None = None, repeats: int = 3) -> dict:
    """Run the whole evaluation; write ``prequential.json`` and ``prequential.png`` in ``out_dir``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    started = time.perf_counter()
    replay = movielens_replay(limit)
    warm_n = int(len(replay) * warmup_frac)
    warm = Replay(replay.users[:warm_n], replay.items[:warm_n], replay.events[:warm_n], replay.weights[:warm_n])
    with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        t = bar.add_task("tuning on the warm-up", total=warm_n)
        tuned = tuning.tune(warm, dim, progress=lambda n: bar.advance(t, n))
        runs: dict[int, list] = {}
        for b in sweep:
            t = bar.add_task(f"prequential replay, batch {b}", total=len(replay))
            runs[b] = run_prequential(replay, _models(tuned, dim), batch_size=b, warmup=warm_n,
                                      progress=lambda n, t=t: bar.advance(t, n))
        t = bar.add_task("learning throughput", total=repeats)
        chosen = MFConfig(dim=dim, **tuned["polyrec"]["chosen"])
        tp = throughput.measure(replay, chosen, tuned["river-biasedmf"]["chosen"]["lr"], repeats=repeats,
                                progress=lambda n: bar.advance(t, n))
    main = runs[sweep[0]]
    models = {r.name: r.summary() for r in main}
    pr = models["polyrec"]["recall@10"]
    to_river = tp["ratio_to_river_learn_one"]
    result = {
        "dataset": {"name": NAME, "events": len(replay),
                    "mapping": MAPPING, "weights": DEFAULT_WEIGHTS,
                    "order": "timestamp, file order as tie-break"},
        "protocol": {"k": 10, "batch_size": sweep[0], "warmup_events": warm_n,
                     "scored": "click and purchase events after the warm-up, scored before they are learned",
                     "candidates": "every item seen before the batch, minus the user's seen items"},
        "models": models,
        "polyrec_config": asdict(chosen),
        "tuning": tuned,
        "batch_size_sweep": {str(b): {r.name: r.summary()["recall@10"] for r in rs} for b, rs in runs.items()},
        "throughput": tp,
        "acceptance": {
            "polyrec / popularity recall@10": report.check(pr / models["popularity"]["recall@10"], 1.2),
            "polyrec / popularity-recent recall@10": report.check(pr / models["popularity-recent"]["recall@10"], 1.2),
            "polyrec / river-biasedmf recall@10": report.check(pr / models["river-biasedmf"]["recall@10"], 1.2),
            "polyrec / implicit-als recall@10": report.check(pr / models["implicit-als"]["recall@10"], 0.9),
            "polyrec learn_many / river learn_one": report.check(to_river["polyrec_learn_many"], 5.0),
            "polyrec learn + top-10 / river learn_one": report.check(to_river["polyrec_learn_and_top10"], 2.0),
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    report.write_json(result, out_dir / "prequential.json")
    report.plot(main, {b: result["batch_size_sweep"][str(b)] for b in sweep}, out_dir / "prequential.png")
    return result
