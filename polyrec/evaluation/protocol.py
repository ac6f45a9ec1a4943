"""The prequential protocol: score each event before learning it, on a shared replay.

Every model sees the same events in the same micro-batches. For each scorable event (a click or
purchase after the warm-up) the model ranks every item known before the batch, with the user's
seen items removed (including earlier events of the same batch); then all models learn the batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from polyrec.ids import IdIndex
from polyrec.topk import rank_of


class Recommender(Protocol):
    """What a model must offer the protocol. Columns follow the shared item catalog."""

    name: str

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        """Scores (len(users), len(catalog)): column n is item ``catalog[n]``.

        The catalog only grows between calls, so adapters may cache their id mapping.
        """

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        """Learn a micro-batch of weighted events, in order."""


@dataclass
class Replay:
    """The event stream: parallel arrays in replay order."""

    users: np.ndarray
    items: np.ndarray
    events: np.ndarray
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class ModelResult:
    """Per-event outcomes for one model over the scored events."""

    name: str
    hits: list[np.ndarray] = field(default_factory=list)
    ndcg: list[np.ndarray] = field(default_factory=list)
    users: list[np.ndarray] = field(default_factory=list)  # the protocol's user row of each scored event
    learn_seconds: float = 0.0
    learned: int = 0

    def summary(self, keep: np.ndarray | None = None) -> dict:
        """Recall@10 and NDCG@10 over the scored events, or over those where ``keep`` (bool per
        scored event, in the order they were scored) is true."""
        hits = np.concatenate(self.hits) if self.hits else np.zeros(0)
        ndcg = np.concatenate(self.ndcg) if self.ndcg else np.zeros(0)
        if keep is not None:
            hits, ndcg = hits[keep], ndcg[keep]
        return {
            "recall@10": float(hits.mean()) if len(hits) else 0.0,
            "ndcg@10": float(ndcg.mean()) if len(ndcg) else 0.0,
            "scored_events": int(len(hits)),
            "learn_events_per_s": self.learned / self.learn_seconds if self.learn_seconds else 0.0,
        }


class _Seen:
    """Dense seen-matrix of the protocol itself (users x catalog items), grown on demand."""

    def __init__(self) -> None:
        self.matrix = np.zeros((1024, 2048), dtype=bool)

    def ensure(self, n_users: int, n_items: int) -> None:
        rows, cols = self.matrix.shape
        if n_users > rows or n_items > cols:
            grown = np.zeros((max(n_users, 2 * rows), max(n_items, 2 * cols)), dtype=bool)
            grown[:rows, :cols] = self.matrix
            self.matrix = grown


def run_prequential(
    replay: Replay,
    models: Sequence[Recommender],
    *,
    k: int = 10,
    batch_size: int = 100,
    warmup: int = 0,
    scored_events: tuple[str, ...] = ("click", "purchase"),
    sample_every: int = 1,
    score_mask: np.ndarray | None = None,
    announce: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ModelResult]:
    """Replay ``replay`` through ``models``; return each model's per-event hits and NDCG.

    ``sample_every`` > 1 scores a fixed 1-in-N sample of the scorable events, for all models alike.
    ``score_mask`` (bool per event) further restricts which events are scored. With ``announce``
    (``A`` events) items join the catalog before their first event, as if their metadata had arrived
    then, so their first interaction is scorable; models then meet catalog items they have not
    learned. They come in drops: the items whose first event falls in ``[dA, (d+1)A)`` join together,
    in a seeded random order, when the replay reaches ``(d-1)A`` (between A and 2A events ahead),
    so neither the time an item joins nor its catalog column (ties rank by column) tells how soon it
    is wanted. ``announce=0``: just before the batch of its first event. Without ``announce`` an
    item joins the catalog after the batch of its first event.
    """
    users_idx, catalog, seen = IdIndex(), IdIndex(), _Seen()
    results = [ModelResult(m.name) for m in models]
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    scorable_all = np.isin(replay.events, scored_events) & (np.arange(len(replay)) >= warmup)
    if score_mask is not None:
        scorable_all &= score_mask
    if sample_every > 1:
        scorable_all &= np.cumsum(scorable_all) % sample_every == 0
    if announce is not None:  # the items by drop, shuffled within it
        if announce < 0:
            raise ValueError(f"announce must be a number of events >= 0, got {announce}")
        distinct, first = np.unique(replay.items, return_index=True)
        drop = first // announce if announce else first
        order = np.lexsort((np.random.default_rng(0).random(len(distinct)), drop))
        by_drop, drop = distinct[order], drop[order]
    for start in range(0, len(replay), batch_size):
        stop = min(start + batch_size, len(replay))
        b_users, b_items, b_w = replay.users[start:stop], replay.items[start:stop], replay.weights[start:stop]
        u_rows = users_idx.add_many(b_users)
        if announce is not None:
            last_drop = (stop - 1) // announce + 1 if announce else stop - 1
            catalog.add_many(by_drop[len(catalog):np.searchsorted(drop, last_drop, side="right")])
        n_known = len(catalog)
        scorable = np.flatnonzero(scorable_all[start:stop])
        if len(scorable) and not n_known:  # nothing is known yet: every model misses
            for result in results:
                result.hits.append(np.zeros(len(scorable), np.float32))
                result.ndcg.append(np.zeros(len(scorable), np.float32))
                result.users.append(u_rows[scorable])
        elif len(scorable):
            target_cols = catalog.rows(b_items[scorable])  # -1 for items never seen: a miss
            seen.ensure(len(users_idx), n_known)
            mask = seen.matrix[u_rows[scorable], :n_known]
            # earlier events of the same user inside this batch are seen too
            item_cols = catalog.rows(b_items)
            earlier = np.arange(stop - start)[None, :] < scorable[:, None]
            same = (u_rows[scorable][:, None] == u_rows[None, :]) & earlier
            r, c = np.nonzero(same & (item_cols[None, :] >= 0))
            for model, result in zip(models, results):
                s = np.array(model.scores(list(b_users[scorable]), catalog.ids[:n_known]), dtype=np.float64)
                s[mask] = -np.inf
                s[r, item_cols[c]] = -np.inf
                rank = rank_of(s, target_cols)
                hit = rank < k
                result.hits.append(hit.astype(np.float32))
                result.ndcg.append(np.where(hit, discount[np.minimum(rank, k - 1)], 0.0).astype(np.float32))
                result.users.append(u_rows[scorable])
        for model, result in zip(models, results):
            t0 = time.perf_counter()
            model.learn(list(b_users), list(b_items), b_w)
            result.learn_seconds += time.perf_counter() - t0
            result.learned += stop - start
        i_rows = catalog.add_many(b_items)
        seen.ensure(len(users_idx), len(catalog))
        seen.matrix[u_rows, i_rows] = True
        if progress:
            progress(stop - start)
    return results
