"""Top-K recommendations from the MF model with seen items excluded."""

from __future__ import annotations

import numpy as np

from polyrec.history import History
from polyrec.mf import OnlineMF
from polyrec.topk import mask_rows, top_k


def recommend_rows(model: OnlineMF, history: History, user_rows: np.ndarray,
                   k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` item rows and scores for each user row, seen items excluded (-1 pads)."""
    scores = model.score_rows(user_rows)
    mask_rows(scores, *history.pairs(user_rows))
    return top_k(scores, k)
