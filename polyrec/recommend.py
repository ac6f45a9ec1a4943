"""Top-K recommendations from the MF model with seen items excluded."""

from __future__ import annotations

import numpy as np

from polyrec.history import History
from polyrec.mf import OnlineMF
from polyrec.topk import mask_rows, top_k

SCORE_CELLS = 1 << 22  # user x item scores held at once (16 MiB of float32), whatever the batch


def recommend(user_factors: np.ndarray, item_factors: np.ndarray, item_bias: np.ndarray,
              seen: tuple[np.ndarray, np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` item rows and scores for each user vector, the ``seen`` pairs excluded (-1 pads).

    ``seen`` is ``(n, item_row)`` pairs with ``n`` ascending (``History.pairs``). Users are scored
    in chunks of at most :data:`SCORE_CELLS` scores, so a batch of many users over a large
    catalogue does not hold (and copy) one users x items matrix.
    """
    seen_users, seen_items = seen
    step = max(1, SCORE_CELLS // max(len(item_factors), 1))
    idx, best = [], []
    for start in range(0, max(len(user_factors), 1), step):
        scores = item_bias + user_factors[start:start + step] @ item_factors.T
        lo, hi = np.searchsorted(seen_users, [start, start + step])
        mask_rows(scores, seen_users[lo:hi] - start, seen_items[lo:hi])
        i, b = top_k(scores, k)
        idx.append(i)
        best.append(b)
    return np.concatenate(idx), np.concatenate(best)


def recommend_rows(model: OnlineMF, history: History, user_rows: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`recommend` for user rows of ``model``, their ``history`` excluded."""
    return recommend(model.user_factors[user_rows], model.item_factors, model.item_bias,
                     history.pairs(user_rows), k)
