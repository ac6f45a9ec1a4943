"""Hyper-parameter choice on the warm-up only: prequential on its first half vs second half."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from polyrec.evaluation.baselines import ImplicitALS, PolyrecMF, Popularity, RiverMF
from polyrec.evaluation.protocol import Recommender, Replay, run_prequential
from polyrec.mf import MFConfig


@dataclass(frozen=True)
class Candidate:
    family: str
    params: dict
    build: Callable[[str], Recommender]  # name -> fresh model


def grid(**axes: tuple) -> list[dict]:
    """Every combination of the axes' values, as keyword dicts."""
    keys = list(axes)
    return [dict(zip(keys, values)) for values in itertools.product(*(axes[k] for k in keys))]


def candidates(dim: int) -> list[Candidate]:
    """The grids searched for each model family (all at the same factor dimension)."""
    # mypy cannot infer a lambda with a default argument (p=p binds each grid point): hence the ignores
    out = [Candidate("polyrec", p, lambda name, p=p: PolyrecMF(MFConfig(dim=dim, **p), name=name))  # type: ignore[misc]
           for p in grid(user_lr=(0.05, 0.15, 0.5), item_lr=(0.02, 0.05, 0.1), reg=(0.01, 0.03))]
    out += [Candidate("implicit-als", p, lambda name, p=p: ImplicitALS(name=name, **p))  # type: ignore[misc]
            for p in grid(factors=(dim, 2 * dim), regularization=(0.1, 1.0), alpha=(1.0, 10.0))]
    out += [Candidate("river-biasedmf", p, lambda name, p=p: _river(name, dim, **p))  # type: ignore[misc]
            for p in grid(lr=(0.005, 0.02, 0.05))]
    out += [Candidate("popularity-recent", p, lambda name, p=p: Popularity(name=name, **p))  # type: ignore[misc]
            for p in grid(window=(1000, 2000, 5000))]
    return out


def _river(name: str, dim: int, lr: float) -> RiverMF:
    from river import optim

    return RiverMF(n_factors=dim, name=name, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr))


def tune(warmup: Replay, dim: int, progress: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Score every candidate on the warm-up's second half; return, per family, the best and all."""
    cands = candidates(dim)
    models = [c.build(f"{c.family}#{n}") for n, c in enumerate(cands)]
    results = run_prequential(warmup, models, batch_size=1, warmup=len(warmup) // 2, progress=progress)
    table: dict[str, dict] = {}
    for cand, res in zip(cands, results):
        recall = res.summary()["recall@10"]
        fam = table.setdefault(cand.family, {"candidates": [], "chosen": None, "best_recall@10": -1.0})
        fam["candidates"].append({"params": cand.params, "recall@10": recall})
        if recall > fam["best_recall@10"]:
            fam["chosen"], fam["best_recall@10"] = cand.params, recall
    return table
