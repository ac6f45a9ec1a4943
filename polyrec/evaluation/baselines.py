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

from polyrec.ids import IdIndex
from polyrec.mf import MFConfig, OnlineMF


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


class PolyrecMF:
    """polyrec's own :class:`~polyrec.mf.OnlineMF`, one ``learn_many`` per micro-batch."""

    def __init__(self, config: MFConfig | None = None, name: str = "polyrec") -> None:
        self.name = name
        self.model = OnlineMF(config)
        self._cols = _ColumnMap()

    def scores(self, users: Sequence[str], catalog: Sequence[str]) -> np.ndarray:
        cols = self._cols.get(self.model.items, catalog)
        return self.model.score_rows(self.model.add_users(users))[:, cols]

    def learn(self, users: Sequence[str], items: Sequence[str], weights: np.ndarray) -> None:
        self.model.learn_many(users, items, weights)


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

    Users known at the last retrain are folded in at request time from their full current
    history (``recalculate_user``); unknown users, and everyone before the first retrain, get
    all-time popularity. Items that arrived after the last retrain rank below known ones.
    """

    def __init__(self, factors: int = 64, regularization: float = 0.05, iterations: int = 15,
                 alpha: float = 1.0, retrain_every: int = 5000, name: str = "implicit-als") -> None:
        self.name = name
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
        known = np.flatnonzero((rows >= 0) & (rows < n_users))
        if len(known):
            history = self._csr([self.history[r] for r in rows[known]], n_items)
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
