"""Peer recommenders wrapped for the prequential protocol.

Adapters leave each model's learning untouched: ``learn`` calls the model and nothing else (it
is what the protocol times), and ``scores`` translates the model's own ids and parameters onto
the protocol's item catalog.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.explore import NO_FRESH, ExploreConfig, FitBars, Fresh
from polyrec.history import History
from polyrec.ids import IdIndex
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import NO_SEEN, NO_YOUNG, fresh_items, score_users


class _ColumnMap:
    """Rows of a model's own id index for the protocol's catalog, extended as it grows."""

    def __init__(self) -> None:
        self.rows = np.zeros(0, np.int64)

    def get(self, index: IdIndex, catalog: Sequence[str]) -> np.ndarray:
        if len(self.rows) < len(catalog) or (self.rows < 0).any():
            self.rows = index.rows(catalog)
        return self.rows[: len(catalog)]


class Popularity:
    """Event counts per item: all-time, or over the last ``window`` events. With ``only``, the
    items outside it rank below every item in it (e.g. popularity among the new items)."""

    def __init__(self, window: int | None = None, name: str | None = None,
                 only: Collection[str] | None = None) -> None:
        self.name = name or ("popularity-recent" if window else "popularity")
        self.window = window
        self.only = None if only is None else np.asarray(sorted(only), dtype=str)
        self.items = IdIndex()
        self.counts = np.zeros(64, np.float64)
        self._recent: deque[np.ndarray] = deque()
        self._in_window = 0
        self._cols = _ColumnMap()
        self._in_only = np.zeros(0, bool)  # per catalog column, extended as the catalog grows

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        rows = self._cols.get(self.items, catalog)
        counts = np.where(rows >= 0, self.counts[rows], 0.0)
        if self.only is not None:
            fresh = np.asarray(catalog[len(self._in_only):], dtype=str)
            self._in_only = np.concatenate([self._in_only, np.isin(fresh, self.only)])
            counts = np.where(self._in_only[: len(catalog)], counts, -1.0)
        return np.broadcast_to(counts, (len(users), len(catalog)))

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        rows = self.items.add_many(items)
        if len(self.items) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(self.items)))
        self.counts += np.bincount(rows, minlength=len(self.counts))
        if self.window:
            self._recent.append(rows)
            self._in_window += len(rows)
            while self._in_window - len(self._recent[0]) >= self.window:
                old = self._recent.popleft()
                self._in_window -= len(old)
                self.counts -= np.bincount(old, minlength=len(self.counts))


class Polyrec:
    """polyrec's model as the worker runs it: :class:`~polyrec.mf.OnlineMF` learns each micro-batch
    (``learn_rows``), the :class:`~polyrec.cooccurrence.Cooccurrence` memory and the items'
    :class:`~polyrec.consumers.Consumers` learn the same events, and
    :func:`~polyrec.recommend.score_users` blends them. Without ``cooccurrence`` or ``consumers``
    that part is left out (an ablation). With ``explore`` (and ``consumers``) items with no events
    yet are explored and young items promoted (``polyrec/explore.py``), the users' seen items excluded as the worker's
    :class:`~polyrec.history.History` holds them."""

    def __init__(self, config: MFConfig | None = None, cooccurrence: CooccurrenceConfig | None = None,
                 consumers: ConsumersConfig | None = None, name: str = "polyrec",
                 explore: ExploreConfig | None = None) -> None:
        self.name = name
        self.model = OnlineMF(config)
        self.memory = None if cooccurrence is None else Cooccurrence(cooccurrence, users=self.model.users)
        self.consumers = None if consumers is None else Consumers(consumers, self.model.config.dim)
        self.explore = None if self.consumers is None else explore
        self.history = None if self.explore is None else History()
        self.bars = FitBars()  # the users' fit bars, as the worker keeps them
        self._cols = _ColumnMap()

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        cols = self._cols.get(self.model.items, catalog)
        rows = self.model.add_users(users)
        context = None if self.memory is None else self.memory.recent_rows(rows)
        young = NO_YOUNG if self.consumers is None else self.consumers.young_factors(self.model.item_factors)
        seen, fresh = NO_SEEN, NO_FRESH
        if self.history is not None and self.consumers is not None:
            seen, fresh = self.history.pairs(rows), self.fresh(rows)
        return score_users(self.model.user_factors[rows], self.model.item_factors, self.model.item_bias,
                           self.memory, context, young, seen, fresh, self.explore, self.promoted(young[0]))[:, cols]

    def promoted(self, young_rows: np.ndarray) -> np.ndarray:
        """The young item rows that exploration may promote (``polyrec/explore.py``): all of them."""
        return young_rows

    def fresh(self, rows: np.ndarray) -> Fresh:
        """The items that exploration may show, those with no events yet (``Consumers.fresh_factors``),
        for the user ``rows``, their audiences judged among the users with a fit bar (needs
        ``consumers``)."""
        assert self.consumers is not None
        return fresh_items(self.model, self.consumers, self.bars, rows)

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        u, i = self.model.add_users(users), self.model.add_items(items)
        w = np.asarray(weights, np.float32)
        self.model.learn_rows(u, i, w, negatives=None if self.consumers is None
                              else self.consumers.with_events(len(self.model.items)))
        if self.memory is not None:
            self.memory.learn_rows(u, i)
        if self.consumers is not None:
            self.consumers.learn_rows(i, self.model.user_factors[u], w)
        if self.history is not None:
            self.history.add(u, i)


class ItemKNN:
    """Incremental item-to-item kNN, as teams deploy it: cosine on weighted co-occurrence, updated
    event by event.

    A user's weight on an item is the sum of their event weights on it; ``C[i, j]`` sums, over users,
    the product of their weights on ``i`` and ``j`` and is kept dense (items x items: fine for the
    evaluation's catalogues). ``sim(i, j) = C[i, j] / (|i| |j| + shrink)``, where ``|i|^2`` sums the
    squared weights on ``i``. A user's score of ``j`` sums ``weight(u, i) * sim(i, j)`` over their
    items ``i``, or over their last ``recent`` distinct items; with ``neighbours`` each item ``i``
    lends its score only to its ``neighbours`` most similar items.
    """

    def __init__(self, recent: int | None = None, neighbours: int | None = None, shrink: float = 0.0,
                 name: str | None = None) -> None:
        self.name = name or ("item-knn-recent" if recent else "item-knn")
        self.recent, self.neighbours, self.shrink = recent, neighbours, shrink
        self.users, self.items = IdIndex(), IdIndex()
        self.cooc = np.zeros((64, 64), np.float32)
        self.sq = np.zeros(64, np.float64)  # |i|^2
        self.history: list[dict[int, float]] = []  # per user row: item row -> weight, least recent first
        self._cols = _ColumnMap()

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        u_rows, i_rows = self.users.add_many(users), self.items.add_many(items)
        if len(self.items) > len(self.sq):
            n = max(len(self.items), 2 * len(self.sq))
            self.cooc = np.pad(self.cooc, ((0, n - len(self.cooc)), (0, n - len(self.cooc))))
            self.sq = np.pad(self.sq, (0, n - len(self.sq)))
        self.history.extend({} for _ in range(len(self.users) - len(self.history)))
        for u, i, w in zip(u_rows.tolist(), i_rows.tolist(), np.asarray(weights).tolist()):
            h = self.history[u]
            old = h.pop(i, 0.0)  # re-inserted last: the dict keeps recency order
            if h:
                others = np.fromiter(h, np.int64, len(h))
                inc = w * np.fromiter(h.values(), np.float32, len(h))
                self.cooc[i, others] += inc
                self.cooc[others, i] += inc
            self.sq[i] += (old + w) ** 2 - old**2
            h[i] = old + w

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        cols = self._cols.get(self.items, catalog)
        n = len(self.items)
        norm = np.sqrt(self.sq[:n])
        out = np.zeros((len(users), len(catalog)))
        for row, u in enumerate(self.users.rows(users).tolist()):
            h = self.history[u] if u >= 0 else {}
            if not h:
                continue
            mine = np.fromiter(h, np.int64, len(h))[-self.recent if self.recent else 0:]
            w = np.fromiter(h.values(), np.float64, len(h))[-len(mine):]
            sim = self.cooc[mine, :n] / (norm[mine, None] * norm[None, :] + self.shrink + 1e-12)
            if self.neighbours and self.neighbours < n:
                sim[np.arange(len(mine)), mine] = 0.0
                kth = -np.partition(-sim, self.neighbours - 1, axis=1)[:, self.neighbours - 1, None]
                sim = np.where(sim >= kth, sim, 0.0)
            out[row] = (w @ sim)[cols]
        return out


class RiverMF:
    """River's ``BiasedMF`` fed one event at a time through ``learn_one``.

    Scoring reads River's own parameters into arrays (refreshing only the items learned since
    the last call), which equals ``predict_one`` over every item without a Python call per item.
    """

    def __init__(self, n_factors: int = 32, seed: int = 42, name: str = "river-biasedmf", **kwargs) -> None:
        from river import reco

        self.name = name
        self.model = reco.BiasedMF(n_factors=n_factors, seed=seed, **kwargs)
        self.items = IdIndex()
        self._lat = np.zeros((0, n_factors))
        self._bias = np.zeros(0)
        self._dirty: list[str] = []
        self._cols = _ColumnMap()

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        m = self.model
        self._refresh(list(catalog) + self._dirty)
        self._dirty.clear()
        cols = self._cols.get(self.items, catalog)
        u_lat = np.stack([m.u_latents[u] for u in users])
        u_bias = np.array([m.u_biases[u] for u in users])
        return m.global_mean.get() + u_bias[:, None] + self._bias[cols][None, :] + u_lat @ self._lat[cols].T

    def _refresh(self, items: list[str]) -> None:
        before = len(self.items)
        rows = self.items.add_many(items)
        n = len(self.items)
        if n > len(self._bias):
            self._lat = np.pad(self._lat, ((0, 2 * n - len(self._lat)), (0, 0)))
            self._bias = np.pad(self._bias, (0, 2 * n - len(self._bias)))
        fresh = set(self._dirty) | set(self.items.ids[before:n])
        m = self.model
        for row, item in zip(rows.tolist(), items):
            if item in fresh:
                self._lat[row] = m.i_latents[item]
                self._bias[row] = m.i_biases[item]

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        learn_one = self.model.learn_one
        for u, i, w in zip(users, items, weights.tolist()):
            learn_one(u, i, w)
        self._dirty.extend(items)


class ImplicitALS:
    """implicit's ALS, retrained from scratch every ``retrain_every`` events, used as deployed.

    At request time a user's factors are solved from their full current history against the last
    retrain's item factors (``recalculate_user``, as implicit's ``recommend(recalculate_user=True)``
    does): every user with any history (``fold_in="all"``), or only the users the last retrain
    knew (``fold_in="trained"``). The others, and everyone before the first retrain, get all-time
    popularity. Items that arrived after the last retrain rank below trained ones.
    """

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 1.0, retrain_every: int = 5000, fold_in: str = "all",
                 name: str | None = None) -> None:
        if fold_in not in ("all", "trained"):
            raise ValueError(f"fold_in must be 'all' or 'trained', got {fold_in!r}")
        self.name = name or ("als-foldin" if fold_in == "all" else "als-foldin-trained-users")
        self.fold_in = fold_in
        self.params = dict(factors=factors, regularization=regularization, iterations=iterations, alpha=alpha)
        self.retrain_every = retrain_every
        self.users, self.items = IdIndex(), IdIndex()
        self.history: list[dict[int, float]] = []  # per user row: item row -> summed weight
        self._since = 0
        self._model: Any = None  # implicit's AlternatingLeastSquares once trained (implicit is untyped)
        self._trained_shape = (0, 0)
        self.popularity = Popularity()
        self._cols = _ColumnMap()

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        out = np.array(self.popularity.scores(users, catalog), dtype=np.float64)
        if self._model is None:
            return out
        n_users, n_items = self._trained_shape
        rows = self.users.rows(users)
        foldable = (rows >= 0) & (rows < (len(self.history) if self.fold_in == "all" else n_users))
        history = self._csr([self.history[r] for r in rows[foldable]], n_items)
        has_items = np.diff(history.indptr) > 0  # not someone whose items all came after the retrain
        known = np.flatnonzero(foldable)[has_items]
        history = history[has_items]
        if len(known):
            factors = self._model.recalculate_user(rows[known], history)
            cols = self._cols.get(self.items, catalog)
            trained = (cols >= 0) & (cols < n_items)
            s = np.full((len(known), len(catalog)), -1e9)
            s[:, trained] = factors @ self._model.item_factors[cols[trained]].T
            out[known] = s
        return out

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        self.popularity.learn(users, items, weights)
        u_rows, i_rows = self.users.add_many(users), self.items.add_many(items)
        self.history.extend({} for _ in range(len(self.users) - len(self.history)))
        for u, i, w in zip(u_rows.tolist(), i_rows.tolist(), weights.tolist()):
            h = self.history[u]
            h[i] = h.get(i, 0.0) + w
        self._since += len(users)
        if self._since >= self.retrain_every:
            self._retrain()

    @staticmethod
    def _csr(rows: list[dict[int, float]], n_items: int):
        """A CSR matrix of the given history rows, keeping only item columns < ``n_items``."""
        from scipy.sparse import csr_matrix

        indptr, indices, data = [0], [], []
        for h in rows:
            for i, w in h.items():
                if i < n_items:
                    indices.append(i)
                    data.append(w)
            indptr.append(len(indices))
        return csr_matrix((np.asarray(data, np.float32), np.asarray(indices, np.int32), indptr),
                          shape=(len(rows), n_items))

    def _retrain(self) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        history = self._csr(self.history, len(self.items))
        history.sort_indices()
        self._model = AlternatingLeastSquares(random_state=0, **self.params)
        self._model.fit(history, show_progress=False)
        self._trained_shape = history.shape
        self._since = 0
