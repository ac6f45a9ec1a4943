"""Hyper-parameter choice on the warm-up only: prequential on its first half vs second half."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.evaluation.baselines import ImplicitALS, ItemKNN, Polyrec, Popularity, RiverMF
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
    """The grids searched for each model family (the factor models all at the same dimension).

    polyrec searches its co-occurrence memory and blend (16 points) with the factors' learning
    rates and regularisation at their defaults (chosen on the warm-up before the memory existed) and
    its young items at theirs (``ConsumersConfig``: chosen on the cold-start validation split); its
    windows stop at 20 events, since each step of window costs every event a pair update
    (docs/evaluation.md: 50 was no better and 20% slower). item-kNN-recent searches 16 points,
    item-kNN 6, each ALS 8, River and recent popularity 3.
    """
    # mypy cannot infer a lambda with a default argument (p=p binds each grid point): hence the ignores
    out = [Candidate("polyrec", p, lambda name, p=p: Polyrec(  # type: ignore[misc]
        MFConfig(dim=dim), CooccurrenceConfig(**p), ConsumersConfig(), name=name))
           for p in grid(window=(10, 20), context=(5, 10), mf_weight=(0.1, 0.3), floor=(0.01, 0.1))]
    for fold_in in ("all", "trained"):
        family = ImplicitALS(fold_in=fold_in).name
        out += [Candidate(family, p, lambda name, p=p, f=fold_in: ImplicitALS(  # type: ignore[misc]
            name=name, fold_in=f, **p))
                for p in grid(factors=(dim, 2 * dim), regularization=(0.1, 1.0), alpha=(1.0, 10.0))]
    out += [Candidate("item-knn", p, lambda name, p=p: ItemKNN(name=name, **p))  # type: ignore[misc]
            for p in grid(neighbours=(None, 50, 200), shrink=(0.0, 10.0))]
    out += [Candidate("item-knn-recent", p, lambda name, p=p: ItemKNN(name=name, **p))  # type: ignore[misc]
            for p in grid(recent=(3, 5, 10, 20), neighbours=(None, 200), shrink=(0.0, 10.0))]
    out += [Candidate("river-biasedmf", p, lambda name, p=p: river(name, dim, **p))  # type: ignore[misc]
            for p in grid(lr=(0.005, 0.02, 0.05))]
    out += [Candidate("popularity-recent", p, lambda name, p=p: Popularity(name=name, **p))  # type: ignore[misc]
            for p in grid(window=(1000, 2000, 5000))]
    return out


def river(name: str, dim: int, lr: float) -> RiverMF:
    from river import optim

    return RiverMF(n_factors=dim, name=name, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr))


def tune(warmup: Replay, dim: int, *, sample_every: int = 1,
         progress: Callable[[int], None] | None = None) -> dict[str, dict]:
    """Score every candidate on the warm-up's second half (by recall@10, per event; with
    ``sample_every``, a 1-in-N sample of its scorable events); return, per family, the best and all."""
    cands = candidates(dim)
    models = [c.build(f"{c.family}#{n}") for n, c in enumerate(cands)]
    results = run_prequential(warmup, models, batch_size=1, warmup=len(warmup) // 2, sample_every=sample_every,
                              progress=progress)
    table: dict[str, dict] = {}
    for cand, res in zip(cands, results):
        recall = res.summary()["recall@10"]
        fam = table.setdefault(cand.family, {"candidates": [], "chosen": None, "best_recall@10": -1.0})
        fam["candidates"].append({"params": cand.params, "recall@10": recall})
        if recall > fam["best_recall@10"]:
            fam["chosen"], fam["best_recall@10"] = cand.params, recall
    return table
