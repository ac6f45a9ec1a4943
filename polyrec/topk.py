"""Top-K selection over score matrices, with seen-item exclusion. Pure numpy."""

from __future__ import annotations

import numpy as np


def mask_rows(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Set ``scores[rows[n], cols[n]] = -inf`` in place (the excluded pairs)."""
    if len(rows):
        scores[rows, cols] = -np.inf


GROUPS = 32  # columns per group in :func:`top_k`'s first pass


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, best first: ``(indices, scores)``, each (n_rows, k).

    Ties are broken by the lower column index. Excluded entries (``-inf``) are never returned while
    a finite one remains; rows with fewer than k finite entries are padded with index -1.

    Two vectorised passes instead of a selection over whole rows (numpy's ``argpartition`` costs
    ~10 ns a column on AVX2): a threshold at most each row's k-th best value (:func:`_threshold`),
    then an exact sort of the few entries at or above it.
    """
    n_rows, n_cols = scores.shape
    idx = np.full((n_rows, k), -1, np.int64)
    best = np.full((n_rows, k), -np.inf, scores.dtype)
    if n_rows == 0 or n_cols == 0 or k == 0:
        return idx, best
    # the entries at or above the threshold (flat: numpy's 2-D nonzero is ten times slower)
    rows, cols = np.divmod(np.flatnonzero(scores >= _threshold(scores, min(k, n_cols))), n_cols)
    values = scores[rows, cols]
    order = np.lexsort((cols, -values, rows))  # by row, then best first, then by column
    rows, cols, values = rows[order], cols[order], values[order]
    place = np.arange(len(rows)) - np.searchsorted(rows, rows)  # rank within the row
    keep = place < k
    idx[rows[keep], place[keep]] = cols[keep]
    best[rows[keep], place[keep]] = values[keep]
    idx[~np.isfinite(best)] = -1
    return idx, best


def _threshold(scores: np.ndarray, k: int) -> np.ndarray:
    """A value per row (n_rows, 1) at or below its k-th best entry, with few entries above it.

    A small catalogue: the k-th best entry itself. A large one: the first ``GROUPS * n`` columns
    are dealt into ``n`` groups (column ``c`` into group ``c % n``), each later column is a group of
    its own, and the k-th largest group maximum is taken: the k group maxima at or above it are k
    distinct entries, so it is at most the k-th best.
    """
    n_rows, n_cols = scores.shape
    if n_cols <= 4 * GROUPS * k:
        return np.partition(scores, n_cols - k, axis=1)[:, n_cols - k, None]
    n = n_cols // GROUPS
    group_max = np.concatenate([scores[:, : GROUPS * n].reshape(n_rows, GROUPS, n).max(axis=1),
                                scores[:, GROUPS * n:]], axis=1)
    return np.partition(group_max, group_max.shape[1] - k, axis=1)[:, group_max.shape[1] - k, None]


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
