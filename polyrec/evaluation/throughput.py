"""Learning throughput in the same run: polyrec's micro-batches against River's ``learn_one``."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.evaluation.protocol import Replay
from polyrec.explore import ExploreConfig
from polyrec.history import History
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import recommend_rows


def _river_pass(replay: Replay, dim: int, lr: float) -> float:
    from river import optim, reco

    model = reco.BiasedMF(n_factors=dim, bias_optimizer=optim.SGD(lr), latent_optimizer=optim.SGD(lr), seed=42)
    learn_one = model.learn_one
    triples = list(zip(replay.users.tolist(), replay.items.tolist(), replay.weights.tolist()))
    t0 = time.perf_counter()
    for u, i, w in triples:
        learn_one(u, i, w)
    return time.perf_counter() - t0


def _polyrec_pass(replay: Replay, config: MFConfig, cooccurrence: CooccurrenceConfig, batch: int,
                  refresh_k: int, explore: ExploreConfig | None = None) -> float:
    """Seconds spent learning the factors, the co-occurrence memory and the items' consumers (and, if
    ``refresh_k``, refreshing every touched user's blended top-K, new items given a place as
    ``explore`` says), as the worker does per micro-batch."""
    model, history = OnlineMF(config), History()
    memory = Cooccurrence(cooccurrence, users=model.users)
    consumers = Consumers(ConsumersConfig(), config.dim)
    users, items = replay.users.tolist(), replay.items.tolist()  # str objects, as River's pass gets them
    spent = 0.0
    for start in range(0, len(replay), batch):
        sl = slice(start, start + batch)
        t0 = time.perf_counter()
        u, i = model.add_users(users[sl]), model.add_items(items[sl])
        update = model.learn_rows(u, i, replay.weights[sl], negatives=consumers.with_events(len(model.items)))
        memory.learn_rows(u, i)
        consumers.learn_rows(i, model.user_factors[u], replay.weights[sl])
        if refresh_k:
            history.add(u, i)
            recommend_rows(model, history, update.user_rows, refresh_k, memory, consumers, explore)
        spent += time.perf_counter() - t0
    return spent


def measure(replay: Replay, config: MFConfig, cooccurrence: CooccurrenceConfig, river_lr: float, *,
            batch: int = 1000, k: int = 10, repeats: int = 3,
            progress: Callable[[int], None] | None = None) -> dict:
    """Median events/s over ``repeats`` full passes of each contender, and ratios to River."""
    runs: dict[str, list[float]] = {"river_learn_one": [], "polyrec_learn": [], "polyrec_learn_and_top10": []}
    for _ in range(repeats):
        runs["river_learn_one"].append(len(replay) / _river_pass(replay, config.dim, river_lr))
        runs["polyrec_learn"].append(len(replay) / _polyrec_pass(replay, config, cooccurrence, batch, 0))
        runs["polyrec_learn_and_top10"].append(
            len(replay) / _polyrec_pass(replay, config, cooccurrence, batch, k, ExploreConfig(place=k)))
        if progress:
            progress(1)
    med = {name: float(np.median(v)) for name, v in runs.items()}
    river = med["river_learn_one"]
    return {
        "events": len(replay), "batch_size": batch, "dim": config.dim, "repeats": repeats,
        "events_per_s_median": med,
        "events_per_s_runs": runs,
        "ratio_to_river_learn_one": {name: v / river for name, v in med.items()},
    }
