"""The cold-start protocol: new items' first events, with only the new items' start differing.

Pure numpy, no encoder: text embeddings come in as arrays. A seeded share of the items is held
out as *new*; every contender is polyrec's ``OnlineMF`` with the same config, and a new item
starts either from its deterministic random vector (polyrec's default) or from the ridge
projection of its text embedding (``polyrec.projection``), refitted the way the stream does it:
lazily, when a new item arrives and the projection is ``refit_every`` events old.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

import numpy as np

from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.evaluation.baselines import Polyrec
from polyrec.evaluation.protocol import ModelResult, Replay
from polyrec.explore import ExploreConfig, Fresh
from polyrec.ids import IdIndex
from polyrec.mf import MFConfig, OnlineMF
from polyrec.projection import Projection, refit_projection

# New items join the catalogue in drops of this many events' first events, 1 to 2 drops ahead
# (``run_prequential``): at its first event other new items wait unseen too, so a model is not
# rewarded merely for ranking "the items with no events yet" high (0, just before the batch of the
# first event, did that: they were exactly the items about to be wanted).
ANNOUNCE = 1000
# The first tenth of a stream is the warm-up, as in the overall protocol: every model is cold then,
# so a new item's events in it measure the system's start, not the item's (docs/coldstart.md). The
# cold-start replay scores them too, reported apart as the whole stream's numbers.
WARMUP_SHARE = 0.1


def holdout_items(items: np.ndarray, frac: float = 0.2, seed: int = 0) -> np.ndarray:
    """A seeded random ``frac`` of the distinct ``items`` (sorted)."""
    distinct = np.unique(np.asarray(items, dtype=str))
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(distinct, size=round(frac * len(distinct)), replace=False))


def validation_split(replay: Replay, test_new: np.ndarray, frac: float = 0.2,
                     seed: int = 0) -> tuple[Replay, np.ndarray]:
    """Where settings are chosen without a scored event of the test: the stream without the test's
    new items ``test_new``, and another seeded ``frac`` of its items held out as new."""
    keep = ~np.isin(replay.items.astype(str), test_new)
    val = Replay(replay.users[keep], replay.items[keep], replay.events[keep], replay.weights[keep])
    return val, holdout_items(val.items, frac, seed + 1)


def occurrence(items: np.ndarray) -> np.ndarray:
    """For each event, how many earlier events its item had (0 for its first)."""
    _, inverse, counts = np.unique(np.asarray(items, dtype=str), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    out = np.empty(len(inverse), np.int64)
    out[order] = np.arange(len(inverse)) - np.repeat(np.cumsum(counts) - counts, counts)
    return out


def first_events(items: np.ndarray, new_items: np.ndarray, n_first: int = 20) -> np.ndarray:
    """True for the events of a new item that are among its first ``n_first``."""
    return np.isin(np.asarray(items, dtype=str), new_items) & (occurrence(items) < n_first)


def cold_start_summaries(results: Sequence[ModelResult], replay: Replay, new_items: np.ndarray, n_first: int = 20,
                         scored: tuple[str, ...] = ("click", "purchase")) -> dict[str, dict]:
    """Each contender's summary (by name) of a replay that scored new items' first ``n_first``
    events (the ``scored`` kinds) over the whole stream: recall@10, NDCG@10 and recall@10 by event
    number over those after the warm-up (the first :data:`WARMUP_SHARE` of the stream, as the
    overall protocol skips), and the same over the whole stream under ``whole_stream``."""
    at = np.flatnonzero(first_events(replay.items, new_items, n_first) & np.isin(replay.events, scored))
    occ = occurrence(replay.items)[at]  # in the order the protocol scored them
    after = at >= warmup_events(len(replay))
    everything = np.ones(len(at), bool)

    def summary(result: ModelResult) -> dict:
        hits = np.concatenate(result.hits) if result.hits else np.zeros(0)
        if len(hits) != len(at):
            raise ValueError(f"{result.name} scored {len(hits)} events, not the {len(at)} new items' first events")
        part = {name: {**result.summary(keep), "recall@10_by_event": recall_by_occurrence(hits[keep], occ[keep])}
                for name, keep in (("after", after), ("whole", everything))}
        return {**part["after"], "whole_stream": part["whole"]}

    return {r.name: summary(r) for r in results}


def warmup_events(n_events: int) -> int:
    """The warm-up of a stream of ``n_events``: its first :data:`WARMUP_SHARE`, learned but left out of
    the headline numbers."""
    return int(n_events * WARMUP_SHARE)


def recall_by_occurrence(hits: np.ndarray, occ: np.ndarray,
                         buckets: tuple[tuple[int, int], ...] = ((0, 1), (1, 5), (5, 20))) -> dict[str, float]:
    """Mean of per-event ``hits`` grouped by the item's earlier events ``occ``: ``[lo, hi)`` buckets,
    labelled by 1-based event numbers ("1", "2-5", "6-20")."""
    out = {}
    for lo, hi in buckets:
        sel = (occ >= lo) & (occ < hi)
        out[f"{lo + 1}" if hi == lo + 1 else f"{lo + 1}-{hi}"] = float(hits[sel].mean()) if sel.any() else 0.0
    return out


@dataclass(frozen=True)
class ItemTexts:
    """Text embeddings: the catalogue's (they fit the projection) and the new items' (projected)."""

    catalog_ids: Sequence[str]
    catalog: np.ndarray  # one row per catalog id, in the catalogue's language
    new_ids: Sequence[str]
    new: np.ndarray  # one row per new id, in the language new items arrive in


@dataclass(frozen=True)
class ProjectionSettings:
    """The projection's hyper-parameters: ridge penalty, events an item needs to train it, refit age."""

    alpha: float = 1.0
    min_count: int = 5
    refit_every: int = 1000  # events


class ColdStartMF(Polyrec):
    """polyrec's model (:class:`~polyrec.evaluation.baselines.Polyrec`: the factors, and the memory,
    consumers and exploration if given) whose ``new_items`` start from their projected text (random
    without ``texts``). Only new items are explored before their first event and promoted while young:
    the other items are announced ahead too, but stand for items a worker knows from their events
    only (a replay starts with every item young; a worker's established items are not)."""

    def __init__(self, config: MFConfig, new_items: Collection[str], texts: ItemTexts | None = None,
                 settings: ProjectionSettings = ProjectionSettings(), name: str = "random-init",
                 cooccurrence: CooccurrenceConfig | None = None, consumers: ConsumersConfig | None = None,
                 explore: ExploreConfig | None = None) -> None:
        super().__init__(config, cooccurrence, consumers, name=name, explore=explore)
        self.new_items = frozenset(new_items)
        self._is_new = np.zeros(0, bool)  # per model item row
        self.texts, self.settings = texts, settings
        self._catalog_rows = IdIndex(texts.catalog_ids if texts else ())
        self._new_rows = IdIndex(texts.new_ids if texts else ())
        self.projection: Projection | None = None
        self.counts = np.zeros(0, np.int64)
        self._since_fit = 0
        self._catalog_len = 0

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        self._add_items(catalog[self._catalog_len:])  # announced items the model has not met
        self._catalog_len = len(catalog)
        return super().scores(users, catalog)

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        rows = self._add_items(items)
        self.counts += np.bincount(rows, minlength=len(self.counts))
        self._since_fit += len(rows)
        super().learn(users, items, weights)

    def _add_items(self, items: Sequence[str]) -> np.ndarray:
        mf = self.model
        before = len(mf.items)
        rows = mf.add_items(items)
        self.counts = np.pad(self.counts, (0, len(mf.items) - len(self.counts)))
        fresh = np.arange(before, len(mf.items))
        new = fresh[[i in self.new_items for i in mf.items.id_at(fresh)]]
        self._is_new = np.pad(self._is_new, (0, len(mf.items) - len(self._is_new)))
        self._is_new[new] = True
        vectors = self._starts(mf.items.id_at(new)) if len(new) else None
        if vectors is not None:
            mf.set_items(new, vectors[:, :-1], vectors[:, -1])
        return rows

    def fresh(self, rows: np.ndarray) -> Fresh:
        fresh = super().fresh(rows)
        new = self._is_new[fresh.rows]
        return replace(fresh, rows=fresh.rows[new], factors=fresh.factors[new])

    def promoted(self, young_rows: np.ndarray) -> np.ndarray:
        return young_rows[self._is_new[young_rows]]

    def _starts(self, ids: list[str]) -> np.ndarray | None:
        """Start vectors (factors, then bias) of new items; None keeps their random start."""
        if self.texts is None:
            return None
        self._refit_if_stale()
        if self.projection is None:
            return None
        return self.projection.project(self.texts.new[self._new_rows.rows(ids)])

    def _refit_if_stale(self) -> None:
        """Refit on the items with a text and ``min_count`` events, as the stream does before projecting."""
        s = self.settings
        assert self.texts is not None  # only _starts refits, and only with texts
        if self.projection is not None and self._since_fit < s.refit_every:
            return
        mf = self.model
        text_rows = self._catalog_rows.rows(mf.items.ids)
        rows = np.flatnonzero(text_rows >= 0)
        fitted = refit_projection(self.texts.catalog[text_rows[rows]], self.counts[rows], mf.item_factors[rows],
                                  mf.item_bias[rows], s.alpha, s.min_count)
        if fitted is not None:
            self.projection, self._since_fit = fitted, 0


class KnownStartMF(ColdStartMF):
    """New items start from given vectors (factors, then bias), e.g. what another run learned for
    them by the end of the stream: a leaky reference for what a start can buy, not a contender."""

    def __init__(self, config: MFConfig, starts: dict[str, np.ndarray], name: str,
                 cooccurrence: CooccurrenceConfig | None = None) -> None:
        super().__init__(config, starts.keys(), name=name, cooccurrence=cooccurrence)
        self.starts = starts

    def _starts(self, ids: list[str]) -> np.ndarray:
        return np.stack([self.starts[i] for i in ids])


def final_vectors(mf: OnlineMF, ids: Sequence[str], part: str = "both") -> dict[str, np.ndarray]:
    """The vectors ``mf`` holds for ``ids``: "both" (factors, bias), "factors" (bias 0) or "bias"
    (the deterministic random factors every item starts from, then the learned bias)."""
    rows = mf.items.rows(ids)
    if (rows < 0).any():
        raise KeyError(f"items unknown to the model: {[i for i, r in zip(ids, rows) if r < 0][:5]}")
    factors, bias = mf.item_factors[rows], mf.item_bias[rows]
    if part == "factors":
        bias = np.zeros_like(bias)
    elif part == "bias":
        factors = mf.initial_factors(list(ids), salt=1)
    elif part != "both":
        raise ValueError(f"part must be both, factors or bias, got {part!r}")
    return dict(zip(ids, np.column_stack([factors, bias]).astype(np.float32)))


def overlap_at_k(users: np.ndarray, a: np.ndarray, b: np.ndarray, k: int = 10) -> np.ndarray:
    """Per user row, the share of the top-``k`` items under item vectors ``a`` also in the top-``k``
    under ``b`` (item vectors: factors with the bias as last column); all of them if fewer than ``k``."""
    k = min(k, len(a))

    def top(v: np.ndarray) -> np.ndarray:
        s = users @ v[:, :-1].T + v[:, -1]
        return np.argpartition(-s, k - 1, axis=1)[:, :k]

    ta, tb = top(a), top(b)
    return (ta[:, :, None] == tb[:, None, :]).any(axis=2).sum(axis=1) / k


def top1_hits(queries: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per query row: is its nearest target row (dot product) the row with the same index?"""
    return np.argmax(queries @ targets.T, axis=1) == np.arange(len(queries))
