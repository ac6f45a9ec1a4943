"""Scores and top-K recommendations: the factors (young items' from their consumers), blended with
the co-occurrence memory, seen items excluded, fresh and young items given a place."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from polyrec.consumers import Consumers
from polyrec.cooccurrence import Cooccurrence
from polyrec.explore import NO_FRESH, NOTHING, ExploreConfig, FitBars, Fresh, lift, offer, promote
from polyrec.history import History
from polyrec.mf import OnlineMF
from polyrec.topk import mask_rows, top_k

SCORE_CELLS = 1 << 22  # user x item scores held at once (16 MiB of float32), whatever the batch
NO_YOUNG = (np.zeros(0, np.int64), np.zeros((0, 0), np.float32))
NO_ROWS = np.zeros(0, np.int64)
NO_SEEN = (NO_ROWS, NO_ROWS)

Young = tuple[np.ndarray, np.ndarray]  # item rows, and the factors they score with (Consumers.young_factors)


def score_users(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
                memory: Cooccurrence | None = None, context: np.ndarray | None = None,
                young: Young = NO_YOUNG, seen: tuple[np.ndarray, np.ndarray] = NO_SEEN,
                fresh: Fresh = NO_FRESH, explore: ExploreConfig | None = None,
                promoted: np.ndarray | None = None) -> np.ndarray:
    """Every item's score for each user vector (users x items): ``b_i + p_u . q_i``, with the
    ``young`` rows' factors in place of ``q_i``, blended with the co-occurrence ``memory`` from
    each user's ``context`` rows (``Cooccurrence.recent``); the ``seen`` ``(user, item)`` pairs at
    ``-inf``; with ``explore`` (``polyrec/explore.py``), the ``promoted`` item rows (the young rows
    unless given) lifted where they are within reach, and for the other users the ``fresh`` items
    (no events yet) lifted where the user is in their audience (``polyrec/explore.py``)."""
    return _scores(user_factors, item_factors, item_bias, memory, context, young, seen, fresh, explore,
                   promoted)[0]


def _scores(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
            memory: Cooccurrence | None, context: np.ndarray | None, young: Young,
            seen: tuple[np.ndarray, np.ndarray], fresh: Fresh, explore: ExploreConfig | None,
            promoted: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`score_users`, and where the promotion selected each row's best ``reach`` columns,
    those columns and the fresh column lifted in the row (-1: none): every column of the row's best
    ``reach`` once the places are given (None: no selection was made)."""
    scores = user_factors @ item_factors.T
    rows, factors = young
    if len(rows):
        scores[:, rows] = user_factors @ factors.T
    scores += item_bias
    mask_rows(scores, *seen)
    picked = NOTHING if explore is None else offer(scores, fresh, user_factors, explore.fit, explore.share)
    if memory is not None and context is not None and context.any():  # else no user has a last event
        scores = memory.blend(scores, context)
        mask_rows(scores, *seen)  # again: a factor weight of 0 would make them NaN
    if explore is None:
        return scores, None
    candidates = young[0] if promoted is None else promoted
    reach = min(explore.reach, scores.shape[1])
    best = top_k(scores, reach) if len(candidates) and reach > explore.place else None
    moved = NOTHING if best is None else promote(scores, candidates, explore.place, best)
    extra = np.full((len(scores), 1), -1, np.int64)
    if len(picked[0]):  # one place per list: a fresh item only where no young one took it
        others = ~np.isin(picked[0], moved[0])
        lifted = (picked[0][others], picked[1][others])
        lift(scores, lifted, explore.place)
        extra[lifted[0], 0] = lifted[1]
    if best is None:
        return scores, None
    extra[(best[0] == extra).any(axis=1)] = -1  # already among the row's best
    return scores, np.concatenate([best[0], extra], axis=1)


def top_among(scores: np.ndarray, columns: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`~polyrec.topk.top_k` of ``scores`` where each row's best ``k`` are among its
    ``columns`` (users x candidates, distinct, -1: none): the same indices, scores and tie-break
    (the lower column), from the candidates alone."""
    values = np.take_along_axis(scores, np.maximum(columns, 0), axis=1)
    values[columns < 0] = -np.inf
    order = np.lexsort((columns, -values), axis=1)[:, :k]
    idx, best = np.take_along_axis(columns, order, axis=1), np.take_along_axis(values, order, axis=1)
    idx[~np.isfinite(best)] = -1
    return idx, best


def recommend(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
              seen: tuple[np.ndarray, np.ndarray], k: int, memory: Cooccurrence | None = None,
              context: np.ndarray | None = None, young: Young = NO_YOUNG, fresh: Fresh = NO_FRESH,
              explore: ExploreConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` item rows and scores for each user vector, the ``seen`` pairs excluded (-1 pads).

    ``seen`` is ``(n, item_row)`` pairs with ``n`` ascending (``History.pairs``); ``memory``,
    ``context``, ``young`` (also the rows promoted), ``fresh`` and ``explore`` as for
    :func:`score_users`. Users are scored in chunks of at most :data:`SCORE_CELLS` scores, so a
    batch of many users over a large catalogue does not hold (and copy) one users x items matrix;
    where the promotion already selected each user's best ``reach`` items, the top ``k`` comes
    from those (:func:`top_among`), not from a second pass over the catalogue.
    """
    seen_users, seen_items = seen
    step = max(1, SCORE_CELLS // max(len(item_factors), 1))
    idx, best = [], []
    for start in range(0, max(len(user_factors), 1), step):
        chunk = slice(start, start + step)
        lo, hi = np.searchsorted(seen_users, [start, start + step])
        scores, columns = _scores(user_factors[chunk], item_factors, item_bias, memory,
                                  None if context is None else context[chunk], young,
                                  (seen_users[lo:hi] - start, seen_items[lo:hi]),
                                  fresh if fresh.users is None else replace(fresh, users=fresh.users[chunk]),
                                  explore, None)
        i, b = (top_k(scores, k) if columns is None or k >= columns.shape[1]
                else top_among(scores, columns, k))
        idx.append(i)
        best.append(b)
    return np.concatenate(idx), np.concatenate(best)


def recommend_rows(model: OnlineMF, history: History, user_rows: np.ndarray, k: int,
                   memory: Cooccurrence | None = None, consumers: Consumers | None = None,
                   explore: ExploreConfig | None = None, bars: FitBars | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`recommend` for user rows of ``model``, their ``history`` excluded, blended with
    ``memory`` if given (sharing the model's user index), young items scored from ``consumers``,
    and (with ``consumers`` and ``explore``) fresh items explored, their audiences judged among the
    users with a fit bar in ``bars`` (without it, among the batch's users)."""
    context = None if memory is None else memory.recent_rows(user_rows)
    young = NO_YOUNG if consumers is None else consumers.young_factors(model.item_factors)
    fresh = NO_FRESH if consumers is None or explore is None else fresh_items(model, consumers, bars, user_rows)
    return recommend(model.user_factors[user_rows], model.item_factors, model.item_bias,
                     history.pairs(user_rows), k, memory, context, young, fresh, explore)


def fresh_items(model: OnlineMF, consumers: Consumers, bars: FitBars | None, user_rows: np.ndarray) -> Fresh:
    """The items of ``model`` with no events yet (``Consumers.fresh_factors``), offered to its user
    ``user_rows``, their audiences judged among the users with a fit bar in ``bars`` (without it,
    among those users): the same for the worker, :func:`recommend_rows` and the evaluation."""
    return Fresh(*consumers.fresh_factors(model.item_factors, model.item_bias), bars, user_rows, model.user_factors)
