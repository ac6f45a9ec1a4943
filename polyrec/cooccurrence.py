"""Item-to-item co-occurrence memory and its blend with the factor scores. Pure numpy.

What a user did just now says most about what they do next (docs/evaluation.md): the items seen
next to their last few items, by everyone, are the best candidates. Every event ``(u, i)`` pairs
``i`` with each of ``u``'s previous ``window`` events, the pair at distance ``d`` weighted
``pair_decay ** (d - 1)``, in both directions, into a dense matrix ``C`` over the first
``max_items`` items the memory meets (memory: ``max_items ** 2 * 4`` bytes at most; items past
that are scored by the factors alone). ``totals`` holds every item's whole pair weight.

A user's co-occurrence score of item ``j`` sums, over their last ``context`` events ``h_l`` (most
recent first), ``context_decay ** l * C[h_l, j] / (total[h_l] ** alpha * total[j] ** (1 - alpha))``:
cosine for ``alpha = 0.5``. It is blended with the matrix-factorisation score ``s`` as
``log(floor * max_j co + co) + mf_weight * s``: items with no co-occurrence fall back to the
factors, and the factors reorder the items the memory brings.

The memory is a function of each user's event sequence; a worker feeds it every event of every
partition (stream/replica.py), so it is the same on every worker.

>>> from polyrec.ids import IdIndex
>>> items = IdIndex(["a", "b", "c"])
>>> memory = Cooccurrence(CooccurrenceConfig(window=2, context=2))
>>> memory.learn(["u", "u", "v", "v"], items.rows(["a", "b", "a", "c"]))
>>> memory.recent(["u", "v", "w"]).tolist()  # matrix slots: here the item rows + 1; 0 is none
[[2, 1], [3, 1], [0, 0]]
>>> scores = memory.scores(memory.recent(["u"]), len(items))  # u's seen a and b are excluded later
>>> [round(float(s), 3) for s in scores[0]]  # c: seen next to a (by v), one step back in u's context
[0.707, 0.636, 0.636]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from polyrec.ids import IdIndex
from polyrec.runs import run_lengths, run_starts


@dataclass(frozen=True)
class CooccurrenceConfig:
    """The memory's shape and the blend. Defaults chosen on the MovieLens warm-ups (docs/evaluation.md)."""

    window: int = 20  # previous events of the same user an event is paired with
    pair_decay: float = 0.95  # weight of a pair per step of distance
    context: int = 5  # a user's last events that score the candidates
    context_decay: float = 0.9  # weight per step back in the context
    alpha: float = 0.5  # 0.5: cosine; larger favours popular partners less
    mf_weight: float = 0.3  # weight of the factor score in the blend
    floor: float = 0.1  # share of the user's best co-occurrence score that every item starts from
    max_items: int = 8192  # items with a row and column in the matrix, first come (256 MiB at most)

    def __post_init__(self) -> None:
        if min(self.window, self.context, self.max_items) < 1:
            raise ValueError("window, context and max_items must be at least 1")
        if not (0 < self.pair_decay <= 1 and 0 < self.context_decay <= 1):
            raise ValueError("pair_decay and context_decay must be in (0, 1]")
        if self.floor <= 0 or self.mf_weight < 0:
            raise ValueError("floor must be positive and mf_weight not negative")


class Cooccurrence:
    """Co-occurrence over the item rows of the model's :class:`IdIndex`, with the last
    ``max(window, context)`` events of every user. ``users``: share the model's user index (then
    :meth:`learn_rows` and :meth:`recent_rows` take its rows); by default the memory keeps its own.

    Items get matrix slots from 1; slot 0 stands for "no event" and "no slot": pairs with it land
    in row and column 0, which nothing reads, so learning needs no masks.
    """

    def __init__(self, config: CooccurrenceConfig | None = None, users: IdIndex | None = None) -> None:
        self.config = c = config or CooccurrenceConfig()
        self.users = IdIndex() if users is None else users
        self._span = max(c.window, c.context)  # ring length per user
        self._decay = c.pair_decay ** np.arange(c.window, dtype=np.float32)  # by distance - 1
        self._context_decay = c.context_decay ** np.arange(c.context, dtype=np.float32)
        self.slot = np.zeros(0, np.int64)  # item row -> its row and column in the matrix (0: none)
        self.slot_items = np.full(1, -1, np.int64)  # matrix slot -> item row
        self.matrix = np.zeros((1, 1), np.float32)
        self.totals = np.zeros(1, np.float32)  # per slot: its pairs' weight with real items
        self._in_row_order = True  # slot s holds item row s - 1 (items met in row order, the usual case)
        self._ring = np.zeros((0, self._span), np.int64)  # user row -> last events' slots (0: none)
        self._count = np.zeros(0, np.int64)  # user row -> events seen

    # -- learning ------------------------------------------------------------------------
    def learn(self, users: Sequence[str], item_rows: np.ndarray) -> None:
        """Learn a micro-batch of events in order (user ids, item rows): each event is paired with
        the previous ``window`` events of its user, earlier events of the same batch included."""
        self.learn_rows(self.users.add_many(users), item_rows)

    def learn_rows(self, user_rows: np.ndarray, item_rows: np.ndarray) -> None:
        """:meth:`learn` for rows of ``users``."""
        if len(item_rows) == 0:
            return
        c, span = self.config, self._span
        u = np.asarray(user_rows, np.int64)
        self._fit_users(int(u.max()) + 1)
        slots = self._slots(np.asarray(item_rows, np.int64))
        # each user's sequence as one segment: their last ``window`` events before the batch (0
        # where there were none), then their events of the batch in order
        order = np.argsort(u, kind="stable")
        starts = run_starts(u[order])
        sizes = run_lengths(starts, len(u))
        users = u[order[starts]]
        count = self._count[users]
        lags = np.arange(1, c.window + 1)
        seg = starts + c.window * np.arange(1, len(starts) + 1)  # where each user's batch events begin
        sequence = np.empty(len(u) + c.window * len(starts), np.int64)
        sequence[(seg[:, None] - lags).ravel()] = self._ring[users[:, None], (count[:, None] - lags) % span].ravel()
        at = np.repeat(seg - starts, sizes) + np.arange(len(u))  # each sorted event's place in ``sequence``
        mine = slots[order]
        sequence[at] = mine
        prev = sequence[at[:, None] - lags]  # (events, window): the predecessors, nearest first
        prev[prev == mine[:, None]] = 0  # an item is not its own partner
        if not mine.all():
            prev[mine == 0] = 0
        n = len(self.matrix)
        flat = self.matrix.reshape(-1)
        w = np.where(prev > 0, self._decay, np.float32(0))  # each pair's weight (0: no partner)
        # flat indices and one weight per index: numpy 2.4's add.at mis-broadcasts (B, W) against (W,)
        np.add.at(flat, (prev + (mine * n)[:, None]).ravel(), w.ravel())  # float32 into float32: the fast path
        np.add.at(flat, (prev * n + mine[:, None]).ravel(), w.ravel())
        self.totals += np.bincount(np.concatenate([mine, prev.ravel()]), np.concatenate([w.sum(axis=1), w.ravel()]),
                                   minlength=n).astype(np.float32)
        # the ring keeps each user's last ``span`` events
        rank = np.arange(len(u)) - np.repeat(starts, sizes)
        last = rank >= np.repeat(sizes, sizes) - span
        self._ring[np.repeat(users, sizes)[last], ((np.repeat(count, sizes) + rank) % span)[last]] = mine[last]
        self._count[users] += sizes

    def forget(self, users: Sequence[str]) -> None:
        """Erase users' last events (the pairs they added stay: sums over every user, like the
        item factors); a returning user starts with no context."""
        rows = self.users.discard(users)
        rows = rows[(rows >= 0) & (rows < len(self._count))]
        self._ring[rows], self._count[rows] = 0, 0

    def _fit_users(self, n_users: int) -> None:
        if n_users > len(self._count):
            grow = max(n_users, 2 * len(self._count), 64) - len(self._count)
            self._ring = np.vstack([self._ring, np.zeros((grow, self._span), np.int64)])
            self._count = np.pad(self._count, (0, grow))

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        """The matrix slot of each item row (0: none), giving one to rows not seen before while
        slots remain."""
        top = int(rows.max()) + 1
        if top > len(self.slot):
            self.slot = np.pad(self.slot, (0, max(top, 2 * len(self.slot)) - len(self.slot)))
        slots = self.slot[rows]
        free = self.config.max_items + 1 - len(self.slot_items)
        if free == 0 or slots.all():
            return slots
        fresh = np.unique(rows[slots == 0])[:free]
        first = len(self.slot_items)
        self.slot[fresh] = first + np.arange(len(fresh))
        self._in_row_order &= bool((fresh == np.arange(first - 1, first - 1 + len(fresh))).all())
        self.slot_items = np.concatenate([self.slot_items, fresh])
        need = len(self.slot_items)
        if need > len(self.matrix):
            size = min(max(need, 2 * len(self.matrix), 64), self.config.max_items + 1)
            grown = np.zeros((size, size), np.float32)
            grown[: len(self.matrix), : len(self.matrix)] = self.matrix
            self.matrix = grown
            self.totals = np.pad(self.totals, (0, size - len(self.totals)))
        return self.slot[rows]

    # -- scoring -------------------------------------------------------------------------
    def recent(self, users: Sequence[str]) -> np.ndarray:
        """Each user's context: the matrix slots of their last ``context`` events, most recent first
        (0: none, or an item without a slot)."""
        return self.recent_rows(self.users.rows(users))

    def recent_rows(self, user_rows: np.ndarray) -> np.ndarray:
        """:meth:`recent` for rows of ``users`` (-1: a user the memory has not met)."""
        c = self.config
        u = np.asarray(user_rows, np.int64)
        known = (u >= 0) & (u < len(self._count))
        back = np.where(known, self._count[np.where(known, u, 0)] if len(self._count) else 0, 0)
        back = back[:, None] - np.arange(1, c.context + 1)
        if not len(self._ring):
            return np.zeros(back.shape, np.int64)
        return np.where(back >= 0, self._ring[np.where(known, u, 0)[:, None], back % self._span], 0)

    def scores(self, context: np.ndarray, n_items: int) -> np.ndarray:
        """Co-occurrence scores (len(context), n_items) of item rows below ``n_items`` from each
        user's ``context`` (:meth:`recent`)."""
        c = self.config
        if not context.any():
            return np.zeros((len(context), n_items), np.float32)
        m = len(self.slot_items)
        weight = np.where(context > 0, self._context_decay, np.float32(0))
        weight /= np.maximum(self.totals[context], 1e-12) ** c.alpha
        mixed = np.matmul(weight[:, None, :], self.matrix[context, 1:m])[:, 0]  # BLAS: 2x an einsum
        mixed /= np.maximum(self.totals[1:m], 1e-12) ** (1 - c.alpha)
        if self._in_row_order and m - 1 == n_items:  # slot s holds item row s - 1: the scores as they are
            return mixed
        out = np.zeros((len(context), n_items), np.float32)
        if self._in_row_order and m - 1 < n_items:
            out[:, : m - 1] = mixed
            return out
        cols = self.slot_items[1:m]
        keep = cols < n_items
        out[:, cols[keep]] = mixed[:, keep]
        return out

    def blend(self, mf_scores: np.ndarray, context: np.ndarray) -> np.ndarray:
        """The final scores of users whose factor scores are ``mf_scores`` (users x items)."""
        c = self.config
        co = self.scores(context, mf_scores.shape[1])
        co += c.floor * np.maximum(co.max(axis=1, keepdims=True, initial=0.0), 1e-12)
        np.log(co, out=co)
        return np.add(co, np.multiply(mf_scores, np.float32(c.mf_weight)), out=co)
