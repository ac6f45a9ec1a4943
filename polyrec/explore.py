"""New items get one place in the lists of the users they fit: fresh ones (no events yet) by their
text, young ones (a few events) by the model's own scores. Pure numpy.

A new item's text places its factors (``polyrec/projection.py``), but until its first event the
co-occurrence memory knows nothing of it, and the blend (``polyrec/cooccurrence.py``) ranks it below
every item seen next to the user's recent items: on its text alone it reaches almost no one, and
without a first consumer it never learns. So each user's list may give one place to a *fresh* item
(one with no events yet) that the user fits: one among the user's best unseen items by factor
score, the best ``fit`` share of the catalogue (0.1: the top tenth). Among the fresh items a user
fits, which one is spread pseudo-randomly (not the best fit: an item that many fit but no one takes
would hold all their places, and the others of its kind would reach no one). It takes the
``place``-th place of the list (the last of a top-10), so every list keeps its first ``place - 1``
places for what the model knows. Only the ``share`` of lists that explore (a pseudo-random draw per
list, :func:`exploring`) give it: each explored place displaces the list's ``place``-th item, which
the user takes more often than a fresh item, so the share bounds what exploring costs everyone
(docs/coldstart.md measures it). ``fit = 0`` or ``share = 0`` turns this off.

Whom it fits is judged with its factors' direction at an established item's typical length, and
with an established item's typical bias (``Consumers.fresh_factors``): a text start is a ridge
projection, which points a new item where the items with texts like it point but shrunk towards
the average item, so at its own length it would fit no one; and its projected bias, the text's
guess of how wanted the item is, was lower for the same item described in another language.
The share is bounded twice: at most one place of each list, and only in the lists of users it
fits; an item leaves the scheme at its first event.

A *young* item (fewer than ``Consumers``' ``young`` events) has a few consumers, and the model
scores it (``polyrec/consumers.py``), but the co-occurrence memory that ranks every list has seen
it only a few times, so it rarely reaches a first place even for the users who take it next.
:func:`promote` gives the same place to the user's best-scoring young item that
is among their best ``reach`` items but not yet in their first ``place``: where a user gets one, it
takes the place instead of a fresh item. Each promotion displaces the list's ``place``-th item, so
``reach`` trades the new items' recall against everyone's (docs/coldstart.md measures both);
``reach = 0`` turns this off.

>>> factor = np.array([[3.0, 2.0, 1.0, 2.5],   # user 0: fresh item 3 is their 2nd best by factors
...                    [3.0, 2.0, 1.0, 0.0]])  # user 1: it is their last
>>> picked = pick(factor, np.array([3]), factor[:, [3]], fit=0.5)  # in the top half: at most 1 of 4 above
>>> picked[0].tolist(), picked[1].tolist()  # only user 0 gets it
([0], [3])
>>> blended = np.array([[9.0, 8.0, 7.0, 0.0], [9.0, 8.0, 7.0, 0.0]])
>>> lift(blended, picked, place=2)
>>> np.argsort(-blended[0]).tolist(), blended[1].tolist()  # user 0: item 3 now 2nd; user 1 untouched
([0, 3, 1, 2], [9.0, 8.0, 7.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Picked = tuple[np.ndarray, np.ndarray]  # user rows of the score matrix, and the fresh column each gets
NOTHING: Picked = (np.zeros(0, np.int64), np.zeros(0, np.int64))


@dataclass(frozen=True)
class ExploreConfig:
    """A fresh item goes to users among whose best unseen items by factor score, the ``fit`` share
    of the catalogue, it is, at the ``place``-th place of their list, in the ``share`` of their lists
    that explore (a pseudo-random draw per list); ``fit = 0`` or ``share = 0``: no exploration.
    A young item among a user's best ``reach`` items goes to that place too; ``reach = 0``: none."""

    fit: float = 0.1
    place: int = 10
    reach: int = 30
    share: float = 0.5

    def __post_init__(self) -> None:
        if not (0 <= self.fit <= 1 and 0 <= self.share <= 1) or self.place < 1 or self.reach < 0:
            raise ValueError("fit and share must be in [0, 1], place at least 1 and reach not negative")


def pick(factor: np.ndarray, fresh: np.ndarray, fresh_scores: np.ndarray, fit: float,
         share: float = 1.0) -> Picked:
    """For each row of ``factor`` (users x items, seen items at ``-inf``), one ``fresh`` column among
    those it fits (:func:`fits`, judged by ``fresh_scores``: users x fresh, see
    ``Consumers.fresh_factors``), or none; only in the ``share`` of the rows that explore
    (:func:`exploring`). Among the columns a user fits, the choice is spread (:func:`_spread`)
    rather than the best fit: a fresh item that many users fit but no one takes would otherwise hold
    every one of their places, and the other fresh items of its kind, never anyone's best, would
    reach no one."""
    if not len(fresh) or fit <= 0 or share <= 0:
        return NOTHING
    ok = fits(factor, fresh_scores, fit)
    if share < 1:
        ok &= exploring(fresh_scores, share)[:, None]
    key = np.where(ok, _spread(len(factor), len(fresh)), 0)
    best = np.argmax(key, axis=1)
    users = np.flatnonzero(ok[np.arange(len(factor)), best])
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


def fits(factor: np.ndarray, scores: np.ndarray, fit: float) -> np.ndarray:
    """Users x candidates: whether fewer than the ``fit`` share of the columns of ``factor`` score
    higher than each candidate (a column of ``scores``) for the user: whether it scores at least
    the user's ``ceil(fit * columns)``-th best."""
    k = int(np.ceil(fit * factor.shape[1]))
    if k > factor.shape[1]:
        return np.isfinite(scores)
    threshold = -np.partition(-factor, k - 1, axis=1)[:, k - 1]
    return (scores >= threshold[:, None]) & np.isfinite(scores)


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
