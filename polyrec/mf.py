"""Online matrix factorisation for implicit feedback, one micro-batch at a time. Pure numpy.

The model scores ``s(u, i) = b_i + p_u . q_i``. A micro-batch of weighted (user, item) events
takes one BPR step against ``n_negatives`` uniformly sampled items per event. The whole batch is
computed from one parameter snapshot; per-row gradients are summed with a sort-based scatter-add
and scaled by a per-row AdaGrad accumulator, so a user with many events in one batch takes one
bounded step instead of an exploding sum. The hot path has no per-event Python loop.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from polyrec.ids import IdIndex, id_normals
from polyrec.runs import group_sum

_EPS = 1e-6


@dataclass(frozen=True)
class MFConfig:
    """Hyper-parameters. The defaults were chosen on the MovieLens warm-up (docs/evaluation.md)."""

    dim: int = 32
    user_lr: float = 0.5
    item_lr: float = 0.1
    reg: float = 0.03
    bias_reg: float = 0.01
    n_negatives: int = 8
    negative_pool: int = 64
    loss: str = "bpr"  # "bpr" | "pointwise"
    init_std: float = 0.1
    seed: int = 42


@dataclass(frozen=True)
class Update:
    """What one micro-batch changed: touched rows and the increments applied to item rows."""

    user_rows: np.ndarray
    item_rows: np.ndarray
    item_delta: np.ndarray  # (len(item_rows), dim)
    bias_delta: np.ndarray  # (len(item_rows),)
    loss: float


def _grown(arr: np.ndarray, n: int) -> np.ndarray:
    """``arr`` with room for at least ``n`` rows (doubling: amortised O(1) per row)."""
    if n <= len(arr):
        return arr
    new = np.zeros((max(n, 2 * len(arr), 64),) + arr.shape[1:], dtype=arr.dtype)
    new[: len(arr)] = arr
    return new


def _read_only(view: np.ndarray) -> np.ndarray:
    view.flags.writeable = False
    return view


def _adagrad_step(param: np.ndarray, accum: np.ndarray, rows: np.ndarray, grad: np.ndarray,
                  lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Ascend ``grad`` (one row per unique row) with a per-row AdaGrad step; return the increments."""
    g2 = grad * grad if grad.ndim == 1 else np.einsum("ij,ij->i", grad, grad) / grad.shape[1]  # mean square
    accum[rows] += g2
    scale = lr / np.sqrt(accum[rows] + _EPS)
    step = (grad * (scale[:, None] if grad.ndim == 2 else scale)).astype(np.float32)
    param[rows] += step
    return rows, step


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class OnlineMF:
    """Implicit-feedback MF with online BPR/AdaGrad over micro-batches.

    Ids are arbitrary strings; unseen users and items are added on the fly with a starting
    vector that is a pure function of (id, seed), so every worker draws the same one.
    """

    def __init__(self, config: MFConfig | None = None) -> None:
        self.config = c = config or MFConfig()
        self.users = IdIndex()
        self.items = IdIndex()
        self._p = np.zeros((0, c.dim), np.float32)  # user factors
        self._q = np.zeros((0, c.dim), np.float32)  # item factors
        self._b = np.zeros(0, np.float32)  # item bias
        self._gp = np.zeros(0, np.float32)  # AdaGrad accumulators, one per row
        self._gq = np.zeros(0, np.float32)
        self._gb = np.zeros(0, np.float32)
        self._rng = np.random.default_rng(c.seed)

    # -- rows (read-only views: write through the methods below) ----------------------------
    @property
    def user_factors(self) -> np.ndarray:
        return _read_only(self._p[: len(self.users)])

    @property
    def user_accum(self) -> np.ndarray:
        return _read_only(self._gp[: len(self.users)])

    @property
    def item_factors(self) -> np.ndarray:
        return _read_only(self._q[: len(self.items)])

    @property
    def item_bias(self) -> np.ndarray:
        return _read_only(self._b[: len(self.items)])

    def set_users(self, rows: np.ndarray | int, factors: np.ndarray, accum: np.ndarray | float) -> None:
        """Overwrite user rows' factors and AdaGrad accumulators (a state loaded from storage)."""
        self._p[rows], self._gp[rows] = factors, accum

    def restart_users(self, rows: np.ndarray) -> None:
        """User rows back to their first factors (deterministic from the id) and an empty accumulator."""
        rows = np.atleast_1d(rows)
        self._p[rows] = self.initial_factors(self.users.id_at(rows), salt=0)
        self._gp[rows] = 0.0

    def set_items(self, rows: np.ndarray, factors: np.ndarray, bias: np.ndarray) -> None:
        """Overwrite item rows' factors and bias (a start from elsewhere, e.g. the item's text)."""
        self._q[rows], self._b[rows] = factors, bias

    def shift_items(self, rows: np.ndarray | int, factors: np.ndarray, bias: np.ndarray | float) -> None:
        """Add to item rows' factors and bias (another worker's contribution, replicated)."""
        self._q[rows] += factors
        self._b[rows] += bias

    def add_users(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Rows for user ids, creating unseen users."""
        before = len(self.users)
        rows = self.users.add_many(ids)
        n = len(self.users)
        if n > before:
            self._p, self._gp = _grown(self._p, n), _grown(self._gp, n)
            self._p[before:n] = self.initial_factors(self.users.ids[before:n], salt=0)
        return rows

    def forget_users(self, ids: Sequence[str]) -> np.ndarray:
        """Erase users: their factors and accumulators zeroed, their ids forgotten (a returning user
        starts afresh on a new row). The rows they had (-1: unknown)."""
        rows = self.users.discard(ids)
        known = rows[rows >= 0]
        self._p[known], self._gp[known] = 0.0, 0.0
        return rows

    def clear_users(self) -> None:
        """Drop every user row (ids, factors, accumulators); items are kept."""
        self.users = IdIndex()
        self._p = np.zeros((0, self.config.dim), np.float32)
        self._gp = np.zeros(0, np.float32)

    def add_items(self, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Rows for item ids, creating unseen items."""
        before = len(self.items)
        rows = self.items.add_many(ids)
        n = len(self.items)
        if n > before:
            self._q, self._b = _grown(self._q, n), _grown(self._b, n)
            self._gq, self._gb = _grown(self._gq, n), _grown(self._gb, n)
            self._q[before:n] = self.initial_factors(self.items.ids[before:n], salt=1)
        return rows

    def initial_factors(self, ids: list[str], salt: int) -> np.ndarray:
        """The deterministic starting vectors for new ids (salt 0: users, 1: items)."""
        c = self.config
        return id_normals(ids, c.dim, c.seed * 2 + salt, c.init_std)

    # -- learning ------------------------------------------------------------------------
    def learn_many(self, users: Sequence[str] | np.ndarray, items: Sequence[str] | np.ndarray,
                   weights: np.ndarray | None = None) -> Update:
        """One step on a micro-batch of events given by string ids."""
        u = self.add_users(users)
        i = self.add_items(items)
        w = np.ones(len(u), np.float32) if weights is None else np.asarray(weights, np.float32)
        return self.learn_rows(u, i, w)

    def learn_rows(self, u: np.ndarray, i: np.ndarray, w: np.ndarray,
                   user_mask: np.ndarray | None = None, item_mask: np.ndarray | None = None,
                   negatives: np.ndarray | None = None) -> Update:
        """:meth:`learn_many` on rows that already exist.

        ``user_mask`` / ``item_mask`` (bool per event) leave out an event's user-side or item-side
        update (its positive item and its share of the negatives): the stream uses them to skip
        what a replayed event had already applied.

        Negatives come from one pool per micro-batch, ``min(n_negatives * B, negative_pool)``
        items drawn uniformly, each weighted ``n_negatives / pool`` so that every event weighs
        the same as with ``n_negatives`` private negatives (for B=1 it is exactly that). Scoring
        the pool is a BLAS matrix product instead of a per-event gather. They are drawn from the
        item rows ``negatives`` (every item when None; the batch's own items when empty): the
        stream and the evaluation pass the items with events (``Consumers.with_events``), so that
        an item no one has met yet is not taught, batch after batch, that no one wants it (its text
        start would fade into the direction every user dislikes before its first event).
        """
        c = self.config
        pool = min(c.n_negatives * len(u), c.negative_pool)
        if negatives is None:
            j = self._rng.integers(0, len(self.items), size=pool)
        else:
            rows = np.asarray(negatives if len(negatives) else i, np.int64)
            j = rows[self._rng.integers(0, len(rows), size=pool)]
        pu, qi, qj = self._p[u], self._q[i], self._q[j]  # (B,k) (B,k) (P,k)
        if item_mask is not None and item_mask.all():
            item_mask = None  # the common case: nothing to leave out, one gradient pass
        if user_mask is not None and user_mask.all():
            user_mask = None
        if item_mask is None:
            g = batch_gradients(c, pu, qi, qj, self._b[i], self._b[j], w, c.n_negatives / pool)
        else:  # events without their item side push no negatives either
            g_all = batch_gradients(c, pu, qi, qj, self._b[i], self._b[j], w, c.n_negatives / pool)
            g_items = batch_gradients(c, pu[item_mask], qi[item_mask], qj, self._b[i[item_mask]],
                                      self._b[j], w[item_mask], c.n_negatives / pool)
            g = replace(g_all, qj=g_items.qj, bj=g_items.bj)
            i, g = i[item_mask], replace(g, qi=g.qi[item_mask], bi=g.bi[item_mask])
            if not item_mask.any():
                j, g = j[:0], replace(g, qj=g.qj[:0], bj=g.bj[:0])
        if user_mask is not None:
            u, g = u[user_mask], replace(g, p=g.p[user_mask])
        item_rows = np.concatenate([i, j])
        grad_q = np.concatenate([g.qi, g.qj])
        grad_b = np.concatenate([g.bi, g.bj])
        user_rows, _ = _adagrad_step(self._p, self._gp, *group_sum(u, g.p), c.user_lr)
        touched, sums = group_sum(item_rows, np.column_stack([grad_q, grad_b]))
        _, dq = _adagrad_step(self._q, self._gq, touched, sums[:, :-1], c.item_lr)
        _, db = _adagrad_step(self._b, self._gb, touched, sums[:, -1], c.item_lr)
        return Update(user_rows, touched, dq, db, g.loss)

    # -- scoring -------------------------------------------------------------------------
    def score_rows(self, u: np.ndarray) -> np.ndarray:
        """Scores of every item for user rows ``u``: (len(u), n_items), float32."""
        n = len(self.items)
        return self._b[:n] + self._p[u] @ self._q[:n].T

    # -- snapshots -----------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write a snapshot (config, ids, parameters, accumulators, RNG state) to ``.npz``."""
        nu, ni = len(self.users), len(self.items)
        meta = {"config": asdict(self.config), "rng": self._rng.bit_generator.state}
        np.savez(
            path, meta=np.array(json.dumps(meta)),
            user_ids=np.array(self.users.ids, dtype=str), item_ids=np.array(self.items.ids, dtype=str),
            p=self._p[:nu], q=self._q[:ni], b=self._b[:ni],
            gp=self._gp[:nu], gq=self._gq[:ni], gb=self._gb[:ni],
        )

    @classmethod
    def load(cls, path: str | Path) -> OnlineMF:
        """Read a snapshot written by :meth:`save` (no pickle involved)."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            model = cls(MFConfig(**meta["config"]))
            model._rng.bit_generator.state = meta["rng"]
            model.users.add_many(z["user_ids"].tolist())
            model.items.add_many(z["item_ids"].tolist())
            for name in ("p", "q", "b", "gp", "gq", "gb"):
                setattr(model, "_" + name, z[name].astype(np.float32))
        return model


@dataclass(frozen=True)
class Gradients:
    """Ascent directions (minus the objective's gradient) for one micro-batch, per event row."""

    p: np.ndarray  # (B,k) users
    qi: np.ndarray  # (B,k) positive items
    qj: np.ndarray  # (P,k) pooled negatives
    bi: np.ndarray  # (B,)
    bj: np.ndarray  # (P,)
    loss: float


def batch_gradients(c: MFConfig, pu: np.ndarray, qi: np.ndarray, qj: np.ndarray, bi: np.ndarray,
                    bj: np.ndarray, w: np.ndarray, neg_weight: float) -> Gradients:
    """Gradients of the batch objective, all from one parameter snapshot.

    Objective: ``sum_b loss_b + reg/2 (|p_b|^2 + |q_i|^2 + |q_j|^2) + bias_reg/2 (b_i^2 + b_j^2)``
    with each regulariser counted once per occurrence of its row in the batch.
    """
    si = bi + np.einsum("bk,bk->b", pu, qi)
    sj = pu @ qj.T  # (B,P)
    sj += bj
    gi, gj, loss = _loss_gradients(c.loss, si, sj, w, neg_weight)
    return Gradients(
        p=gi[:, None] * qi + gj @ qj - c.reg * pu,
        qi=gi[:, None] * pu - c.reg * qi,
        qj=gj.T @ pu - c.reg * qj,
        bi=gi - c.bias_reg * bi,
        bj=gj.sum(axis=0) - c.bias_reg * bj,
        loss=loss,
    )


def _loss_gradients(loss: str, si: np.ndarray, sj: np.ndarray, w: np.ndarray,
                    neg_weight: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Ascent directions on the positive scores (B,) and negative scores (B,P), and the loss.

    ``w`` weighs each event; ``neg_weight`` weighs each sampled negative. BPR compares every
    positive with every negative; the pointwise loss gives positives label 1, negatives 0.
    """
    if loss == "bpr":  # (B,P) arrays, so each step writes into one buffer instead of a new one
        s = np.subtract(sj, si[:, None])
        np.clip(s, -30.0, 30.0, out=s)
        s *= 0.5  # sigma(-(si - sj)) = 0.5 (1 + tanh(x / 2)), as _sigmoid computes it
        np.tanh(s, out=s)
        s += 1.0
        s *= 0.5
        ew = neg_weight * w
        log_rest = np.subtract(1.0, s, dtype=s.dtype)  # log(1 - s): -log sigma(si - sj) is the loss; np.log
        np.log(log_rest, out=log_rest)  # is SIMD on float32, log1p is not (6x slower; the loss is only reported)
        loss_value = float(-(ew @ log_rest.sum(axis=1)) / max(len(w), 1))
        s *= ew[:, None]  # the negatives' weights: from here on ``s`` is the gradient
        gi = s.sum(axis=1)
        return gi, np.negative(s, out=s), loss_value
    if loss == "pointwise":
        si, sj = np.clip(si, -30.0, 30.0), np.clip(sj, -30.0, 30.0)
        n = max(len(w), 1)
        loss_value = float((np.sum(w * np.logaddexp(0.0, -si)) + neg_weight * np.sum(np.logaddexp(0.0, sj))) / n)
        return w * _sigmoid(-si), -neg_weight * _sigmoid(sj), loss_value
    raise ValueError(f"unknown loss {loss!r}: use 'bpr' or 'pointwise'")
