"""Top-K selection over score matrices, with seen-item exclusion. Pure numpy."""

from __future__ import annotations

import numpy as np


def mask_rows(scores: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Set ``scores[rows[n], cols[n]] = -inf`` in place (the excluded pairs)."""
    if len(rows):
        scores[rows, cols] = -np.inf


GROUPS = 32  # column groups of :func:`top_k`'s first pass


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, best first: ``(indices, scores)``, each (n_rows, k).

    Ties are broken by the lower column index. Excluded entries (``-inf``) are never returned while
    a finite one remains; rows with fewer than k finite entries are padded with index -1.

    On a large catalogue, two vectorised passes instead of a selection over whole rows (numpy's
    ``argpartition`` costs ~10 ns a column on AVX2): the columns are dealt into groups (column
    ``c`` into group ``c % n_groups``); a group whose maximum is below the k-th largest group
    maximum holds none of the top k (the k group maxima above it are k distinct entries), so only
    the other groups' columns are ranked exactly.
    """
    n_rows, n_cols = scores.shape
    k_eff = min(k, n_cols)
    if n_cols <= 4 * GROUPS * k_eff:  # a small catalogue: rank it whole
        cols = np.broadcast_to(np.arange(n_cols), scores.shape)
        cand = scores
    else:
        n_groups = -(-n_cols // GROUPS)
        padded = np.full((n_rows, GROUPS, n_groups), -np.inf, scores.dtype)
        padded.reshape(n_rows, -1)[:, :n_cols] = scores  # column c: group c % n_groups, place c // n_groups
        group_max = padded.max(axis=1)
        kth = np.partition(group_max, n_groups - k_eff, axis=1)[:, n_groups - k_eff, None]
        chosen = group_max >= kth  # at least k_eff groups a row; more where group maxima tie
        width = int(chosen.sum(axis=1).max())
        groups = np.argsort(~chosen, axis=1, kind="stable")[:, None, :width]  # chosen ones first, ascending
        # place-major: the chosen groups' columns come out in column order (filler groups, on rows
        # with fewer chosen ones, are masked out)
        cols = (groups + n_groups * np.arange(GROUPS)[:, None]).reshape(n_rows, -1)
        cand = np.take_along_axis(padded, groups, axis=2)
        cand[~np.broadcast_to(np.take_along_axis(chosen[:, None, :], groups, axis=2), cand.shape)] = -np.inf
        cand = cand.reshape(n_rows, -1)
    # the k-th best value of each row; then everything above it, and the ties at it by column
    # (where a row has fewer than k finite entries, the ties are its -inf ones)
    kth_value = -np.partition(-cand, k_eff - 1, axis=1)[:, k_eff - 1, None]
    above = cand > kth_value
    tied = cand == kth_value
    keep = above | (tied & (np.cumsum(tied, axis=1) <= k_eff - above.sum(axis=1, keepdims=True)))
    rows, at = np.nonzero(keep)
    sel_cols = cols[rows, at].reshape(n_rows, k_eff)
    sel = cand[rows, at].reshape(n_rows, k_eff)
    order = np.lexsort((sel_cols, -sel), axis=1)
    idx = np.take_along_axis(sel_cols, order, axis=1).astype(np.int64)
    best = np.take_along_axis(sel, order, axis=1)
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
