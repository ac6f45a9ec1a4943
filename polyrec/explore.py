"""New items get one place in the lists of the users they fit: fresh ones (no events yet) by their
text, young ones (a few events) by the model's own scores. Pure numpy.

A new item's text places its factors (``polyrec/projection.py``), but until its first event the
co-occurrence memory knows nothing of it, and the blend (``polyrec/cooccurrence.py``) ranks it below
every item seen next to the user's recent items: on its text alone it reaches almost no one, and
without a first consumer it never learns. So each fresh item (one with no events yet) is offered to
its *audience*, the ``fit`` share of users it fits best. How well it fits a user is its *margin*:
how far its factor score clears the user's *fit bar*, the score of their ``ceil(fit * items)``-th
best unseen item (:class:`FitBars` keeps each user's from their last scoring). The audience's bar
(:func:`audience_thresholds`) is the margin that the item's best ``fit`` share of the users with a
known bar clear (:func:`offer`). Among the fresh items a user is in the audience of, which one is spread
pseudo-randomly (not the best fit: an item that many fit but no one takes would hold all their
places, and the others of its kind would reach no one). It takes the ``place``-th place of the list
(the last of a top-10), so every list keeps its first ``place - 1`` places for what the model
knows. Only the ``share`` of lists that explore (a pseudo-random draw per list, :func:`exploring`)
give it: each explored place displaces the list's ``place``-th item, which the user takes more
often than a fresh item, so the share bounds what exploring costs everyone (docs/coldstart.md
measures it). ``fit = 0`` or ``share = 0`` turns this off.

Every fresh item reaches the same share of users, whatever its text: until 2026-12-07 an item went
to every user whose bar it cleared, and how many that were depended on where the text placed it (a
title in a language the encoder aligns less well reached a quarter to two thirds as many users on
MovieLens-1M as its English twin). The text chooses *which* users, not *how many*. The margin, not
the raw score, chooses them: a user's bar says how good an item must be to stand out for *them*,
and the raw score favours users with long vectors whatever their taste (docs/coldstart.md compares
the two by the share of a new item's own consumers they reach). A fresh item is judged with its
factors' direction at an established item's typical length, and with an established item's typical
bias (``Consumers.fresh_factors``): a text start is a ridge projection, shrunk towards the average
item, and its projected bias, the text's guess of how wanted it is, was lower for the same item
described in another language.

A *young* item (fewer than ``Consumers``' ``young`` events) has a few consumers, and the model
scores it (``polyrec/consumers.py``), but the co-occurrence memory that ranks every list has seen
it only a few times, so it rarely reaches a first place even for the users who take it next.
:func:`promote` gives the same place to the user's best-scoring young item that
is among their best ``reach`` items but not yet in their first ``place``: where a user gets one, it
takes the place instead of a fresh item. Each promotion displaces the list's ``place``-th item, so
``reach`` trades the new items' recall against everyone's (docs/coldstart.md measures both);
``reach = 0`` turns this off.

>>> factor = np.array([[3.0, 2.0, 1.0, 0.5],   # user 0 by factor score: fit bar (2nd best) 2.0
...                    [0.0, 1.0, 2.0, 3.0],   # user 1: 2.0
...                    [9.0, 8.0, 7.0, 6.0]])  # user 2: 8.0
>>> users = np.array([[2.5], [1.0], [8.1]])  # a fresh item's scores 2.5, 1.0, 8.1: margins 0.5, -1.0, 0.1
>>> picked = offer(factor, Fresh(np.array([7]), np.ones((1, 1)), 0.0), users, fit=0.5, share=1.0)
>>> picked[0].tolist(), picked[1].tolist()  # its audience, the best half of the 3 users: 0 and 2
([0, 2], [7, 7])
>>> blended = np.array([[9.0, 8.0, 7.0, 0.0], [9.0, 8.0, 7.0, 0.0]])
>>> lift(blended, (np.array([0]), np.array([3])), place=2)
>>> np.argsort(-blended[0]).tolist(), blended[1].tolist()  # user 0: item 3 now 2nd; user 1 untouched
([0, 3, 1, 2], [9.0, 8.0, 7.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Picked = tuple[np.ndarray, np.ndarray]  # user rows of the score matrix, and the fresh column each gets
NOTHING: Picked = (np.zeros(0, np.int64), np.zeros(0, np.int64))
AUDIENCE_SAMPLE = 1024  # users with a known fit bar that judge a fresh item's audience, spread evenly


@dataclass(frozen=True)
class ExploreConfig:
    """A fresh item goes to its audience, the ``fit`` share of users it fits best (by how far it
    clears their best ``fit`` share of the catalogue), at the ``place``-th place of their list, in
    the ``share`` of their lists that explore (a pseudo-random draw per list); ``fit = 0`` or
    ``share = 0``: no exploration.
    A young item among a user's best ``reach`` items goes to that place too; ``reach = 0``: none."""

    fit: float = 0.1
    place: int = 10
    reach: int = 30
    share: float = 0.5

    def __post_init__(self) -> None:
        if not (0 <= self.fit <= 1 and 0 <= self.share <= 1) or self.place < 1 or self.reach < 0:
            raise ValueError("fit and share must be in [0, 1], place at least 1 and reach not negative")


class FitBars:
    """Per user row: the user's fit bar, their ``ceil(fit * items)``-th best unseen factor score when
    last scored with fresh items about (NaN: not yet). Fresh items' audiences are judged among the
    users with a bar, not only a batch's: a batch may hold one user."""

    def __init__(self) -> None:
        self.values = np.zeros(0, np.float32)

    def record(self, rows: np.ndarray, bars: np.ndarray) -> None:
        """Keep the finite ``bars`` of user ``rows`` (a user who has seen nearly everything has none)."""
        if len(rows) and rows.max() >= len(self.values):
            grown = np.full(max(int(rows.max()) + 1, 2 * len(self.values), 64), np.nan, np.float32)
            grown[: len(self.values)] = self.values
            self.values = grown
        keep = np.isfinite(bars)
        self.values[rows[keep]] = bars[keep]

    def forget(self, row: int) -> None:
        """Drop a user row's bar (an erased user's)."""
        if row < len(self.values):
            self.values[row] = np.nan

    def margins(self, user_factors: np.ndarray, factors: np.ndarray, bias: float) -> np.ndarray:
        """Users x items: how far ``factors`` (and ``bias``) clear the fit bars of up to
        :data:`AUDIENCE_SAMPLE` users with one (rows of ``user_factors``), spread evenly."""
        known = np.flatnonzero(np.isfinite(self.values[: len(user_factors)]))
        known = known[:: max(1, -(-len(known) // AUDIENCE_SAMPLE))]
        return margins(user_factors[known], self.values[known], factors, bias)


@dataclass(frozen=True)
class Fresh:
    """Items with no events yet, as :func:`offer` judges them: their ``rows``; their ``factors``'
    direction at an established item's typical length and an established item's typical ``bias``
    (``Consumers.fresh_factors``). Their audiences are judged among the users with a fit bar in
    ``bars`` (their vectors: rows of ``population``), after the batch's users (rows ``users``) record
    theirs; without ``bars``, among the batch's users."""

    rows: np.ndarray
    factors: np.ndarray
    bias: float
    bars: FitBars | None = None
    users: np.ndarray | None = None
    population: np.ndarray | None = None


NO_FRESH = Fresh(np.zeros(0, np.int64), np.zeros((0, 0), np.float32), 0.0)


def offer(factor: np.ndarray, fresh: Fresh, user_factors: np.ndarray, fit: float, share: float) -> Picked:
    """For each user vector of ``user_factors`` whose factor scores are the rows of ``factor`` (users x
    items, seen items at ``-inf``), one of the ``fresh`` items whose audience it is in, or none
    (:func:`pick`); the users' fit bars recorded where ``fresh`` keeps them."""
    if not len(fresh.rows) or fit <= 0 or share <= 0:
        return NOTHING
    bars = user_bars(factor, fit)
    batch = margins(user_factors, bars, fresh.factors, fresh.bias)
    reference = batch
    if fresh.bars is not None and fresh.users is not None and fresh.population is not None:
        fresh.bars.record(fresh.users, bars)
        reference = fresh.bars.margins(fresh.population, fresh.factors, fresh.bias)
    return pick(fresh.rows, batch, audience_thresholds(reference, fit), share)


def margins(user_factors: np.ndarray, bars: np.ndarray, factors: np.ndarray, bias: float) -> np.ndarray:
    """Users x items: how far each item's score (``factors`` and ``bias``) clears each user's fit
    bar (``bars``: :func:`user_bars`)."""
    return user_factors @ factors.T + bias - bars[:, None]


def user_bars(factor: np.ndarray, fit: float) -> np.ndarray:
    """Per row of ``factor`` (users x items, seen items at ``-inf``): its ``ceil(fit * items)``-th best
    score, the fit bar (``-inf`` where fewer are finite)."""
    k = min(max(int(np.ceil(fit * factor.shape[1])), 1), factor.shape[1])
    return -np.partition(-factor, k - 1, axis=1)[:, k - 1]


def audience_thresholds(reference: np.ndarray, fit: float) -> np.ndarray:
    """Per column of ``reference`` (users x items: :func:`margins`): the margin that its best ``fit``
    share of the users clear, the ``ceil(fit * users)``-th best; ``+inf`` (no one) where ``fit`` is
    0 or there is no user."""
    k = int(np.ceil(fit * len(reference)))
    if k == 0:
        return np.full(reference.shape[1], np.inf, np.float32)
    return -np.partition(-reference, k - 1, axis=0)[k - 1]


def pick(fresh: np.ndarray, margins: np.ndarray, audience: np.ndarray, share: float = 1.0) -> Picked:
    """For each row of ``margins`` (users x ``fresh`` columns: how far each item clears the user's
    fit bar; ``+inf`` where the user has fewer unseen items than the bar's rank: any item fits), one
    ``fresh`` column whose audience it is in (its margin at least the column's ``audience``), or
    none; only in the ``share`` of the rows that explore (:func:`exploring`). Among the columns
    whose audience a user is in, the choice is spread (:func:`_spread`) rather than the best fit: a
    fresh item that many users fit but no one takes would otherwise hold every one of their places,
    and the other fresh items of its kind, never anyone's best, would reach no one."""
    if not len(fresh) or share <= 0:
        return NOTHING
    ok = margins >= audience  # NaN (no score) never is
    if share < 1:
        ok &= exploring(margins, share)[:, None]
    key = np.where(ok, _spread(len(margins), len(fresh)), 0)
    best = np.argmax(key, axis=1)
    users = np.flatnonzero(ok[np.arange(len(margins)), best])
    return users, fresh[best[users]]


def promote(scores: np.ndarray, young: np.ndarray, place: int, best: tuple[np.ndarray, np.ndarray]) -> Picked:
    """For each row of ``scores`` (users x items, the final scores, seen items at ``-inf``), the
    ``young`` column it scores highest among those below its first ``place`` and within its
    ``best`` (:func:`~polyrec.topk.top_k` of ``scores`` at the reach: the indices and scores of each
    row's best ``reach``, ``reach > place``), if any, raised in place to just above its
    ``place``-th best score (as :func:`lift` would); returns the (row, column) pairs raised.

    >>> from polyrec.topk import top_k
    >>> scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0],   # young 3 is 4th, in reach; 4 is 5th, out of it
    ...                    [9.0, 7.0, 1.0, 6.0, 8.0]])  # young 4 is 2nd, in place already; 3 is 3rd
    >>> users, cols = promote(scores, np.array([3, 4]), 2, top_k(scores, 4))
    >>> users.tolist(), cols.tolist(), np.argsort(-scores[0]).tolist()[:2]
    ([0, 1], [3, 3], [0, 3])
    """
    if not len(young):
        return NOTHING
    in_place, in_reach = best[1][:, place - 1, None], best[1][:, -1, None]  # -inf past a row's finite entries
    s = scores[:, young]
    # within reach: among the selected, where top_k broke ties at the last one by the lower column
    within = (s > in_reach) | ((s == in_reach) & (young <= best[0][:, -1, None]))
    ok = (s < in_place) & within & np.isfinite(s)
    choice = np.argmax(np.where(ok, s, -np.inf), axis=1)
    users = np.flatnonzero(ok[np.arange(len(scores)), choice])
    cols = young[choice[users]]
    scores[users, cols] = np.nextafter(in_place[users, 0], np.inf).astype(scores.dtype)
    return users, cols


def exploring(fresh_scores: np.ndarray, share: float) -> np.ndarray:
    """Per row of ``fresh_scores`` (users x fresh): whether this list explores, a pseudo-random draw
    true for about ``share`` of the rows. The draw hashes the row's values, which change whenever
    the user learns, so a user's lists explore about ``share`` of the time, whatever their place in
    a batch.

    >>> draws = exploring(np.random.default_rng(0).normal(size=(10_000, 3)).astype(np.float32), 0.25)
    >>> bool(0.23 < draws.mean() < 0.27)
    True
    """
    bits = np.ascontiguousarray(fresh_scores, np.float32).view(np.uint32).astype(np.uint64)
    x = (bits * (np.arange(bits.shape[1], dtype=np.uint64) * np.uint64(2) + np.uint64(1))).sum(axis=1)
    return _finish(x * np.uint64(0x9E3779B97F4A7C15)) < np.uint64(share * 2.0**63)


def _finish(x: np.ndarray) -> np.ndarray:
    """The end of a splitmix64 mix: uint64 in (modified in place), uint64 in [1, 2**63) out."""
    x ^= x >> np.uint64(31)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(29)
    return (x >> np.uint64(1)) | np.uint64(1)


def _spread(n_users: int, n_fresh: int) -> np.ndarray:
    """Users x fresh: a fixed pseudo-random positive key per (row, column) (a splitmix64 mix), so
    that each row's largest key among the columns it fits falls on each of them about equally."""
    return _finish(np.arange(n_users, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B97F4A7C15)
                   + np.arange(n_fresh, dtype=np.uint64)[None, :] * np.uint64(0xBF58476D1CE4E5B9))


def lift(scores: np.ndarray, picked: Picked, place: int) -> None:
    """Raise each picked (user, column) in place to just above the user's ``place``-th best score,
    so it ranks ``place``-th (or better, when it already did)."""
    users, cols = picked
    if not len(users):
        return
    rows = scores[users]
    n = min(place, rows.shape[1]) - 1
    threshold = -np.partition(-rows, n, axis=1)[:, n]
    current = rows[np.arange(len(users)), cols]
    below = current <= threshold
    scores[users[below], cols[below]] = np.nextafter(threshold[below], np.inf).astype(scores.dtype)
