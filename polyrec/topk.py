"""Top-K selection over score matrices, with seen-item exclusion. Pure numpy."""

from __future__ import annotations

import numpy as np


def mask_rows(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Set ``scores[rows[n], cols[n]] = -inf`` in place (the excluded pairs)."""
    if len(rows):
        scores[rows, cols] = -np.inf


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, best first: ``(indices, scores)``, each (n_rows, k).

    ``argpartition`` picks the k best in linear time; only those k are sorted. Ties are broken
    by the lower column index. Excluded entries (``-inf``) are never returned while a finite
    one remains; rows with fewer than k finite entries are padded with index -1.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    if k_eff < n_cols:
        part = np.argpartition(-scores, k_eff - 1, axis=1)[:, :k_eff]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((part, -part_scores), axis=1)
        idx = np.take_along_axis(part, order, axis=1)
        # argpartition picks arbitrary columns among ties at the k-th score: redo those rows
        kth = np.take_along_axis(part_scores, order[:, -1:], axis=1)
        tied = np.flatnonzero((scores >= kth).sum(axis=1) > k_eff)
        if len(tied):
            idx[tied] = np.argsort(-scores[tied], axis=1, kind="stable")[:, :k_eff]
    else:
        idx = np.argsort(-scores, axis=1, kind="stable")
    idx = idx.astype(np.int64)
    best = np.take_along_axis(scores, idx, axis=1)
    idx[~np.isfinite(best)] = -1
    if k_eff < k:
        pad = k - k_eff
        idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
        best = np.pad(best, ((0, 0), (0, pad)), constant_values=-np.inf)
    return idx, best


UNRANKED = np.iinfo(np.int64).max


def rank_of(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of ``targets[n]`` in row n, consistent with :func:`top_k`'s tie-break.

    A target that is excluded (``-inf``) or out of range gets :data:`UNRANKED` (never a hit).
    """
    n_rows, n_cols = scores.shape
    valid = (targets >= 0) & (targets < n_cols)
    safe = np.where(valid, targets, 0)
    t = scores[np.arange(n_rows), safe][:, None]
    cols = np.arange(n_cols)[None, :]
    ahead = (scores > t) | ((scores == t) & (cols < safe[:, None]))
    rank = ahead.sum(axis=1)
    return np.where(valid & np.isfinite(t[:, 0]), rank, UNRANKED)
