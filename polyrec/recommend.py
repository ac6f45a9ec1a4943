"""Top-K recommendations from the MF model with seen items excluded."""

from __future__ import annotations

import numpy as np

from polyrec.history import History
from polyrec.mf import OnlineMF
from polyrec.topk import mask_rows, top_k

SCORE_CELLS = 1 << 22  # user x item scores held at once (16 MiB of float32), whatever the batch


def recommend_rows(model: OnlineMF, history: History, user_rows: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` item rows and scores for each user row, seen items excluded (-1 pads).

    Users are scored in chunks of at most :data:`SCORE_CELLS` scores, so a batch of many users
    over a large catalogue does not hold (and copy) one users x items matrix.
    """
    step = max(1, SCORE_CELLS // max(len(model.items), 1))
    idx, best = [], []
    for start in range(0, max(len(user_rows), 1), step):
        rows = user_rows[start:start + step]
        scores = model.score_rows(rows)
        mask_rows(scores, *history.pairs(rows))
        i, b = top_k(scores, k)
        idx.append(i)
        best.append(b)
    return np.concatenate(idx), np.concatenate(best)
