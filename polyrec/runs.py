"""Runs of equal values in sorted arrays: where each run starts, and sums over runs. Pure numpy.

The learner groups a micro-batch's events by user or item row many times per batch: these helpers
do it without ``np.unique`` (which sorts again) or ``np.r_`` (whose indexing machinery costs more
than the work on a batch of a thousand).

>>> starts = run_starts(np.array([2, 2, 5, 7, 7, 7]))
>>> starts.tolist(), run_lengths(starts, 6).tolist()
([0, 2, 3], [2, 1, 3])
>>> rows, sums = group_sum(np.array([7, 2, 7]), np.array([1.0, 2.0, 3.0]))
>>> rows.tolist(), sums.tolist()
([2, 7], [2.0, 4.0])
"""

from __future__ import annotations

import numpy as np


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Indices where a run of equal values begins in ``sorted_values`` (empty for an empty array)."""
    new = np.empty(len(sorted_values), bool)
    new[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new[1:])
    return np.flatnonzero(new)


def run_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    """Length of each run beginning at ``starts`` in ``n`` values: ``np.diff(starts, append=n)``
    without the concatenation, which costs more than the subtraction on a batch."""
    sizes = np.empty_like(starts)
    np.subtract(starts[1:], starts[:-1], out=sizes[:-1])
    sizes[-1:] = n - starts[-1:]
    return sizes


def group_sum(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum ``values`` over equal ``rows``: returns ``(unique_rows, sums)`` (a fast ``np.add.at``)."""
    if len(rows) == 0:
        return rows, values
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = run_starts(sorted_rows)
    if 2 * len(starts) <= len(rows):  # mostly repeated rows: one pass
        return sorted_rows[starts], np.add.reduceat(values[order], starts, axis=0)
    # mostly distinct rows (a batch's items): ``reduceat`` pays per run, so only the repeated ones
    # go through it; a run's sum does not depend on the others, so the result is the same bits
    sums = values[order[starts]]
    sizes = run_lengths(starts, len(rows))
    repeated = sizes > 1
    if repeated.any():
        runs = sizes[repeated]
        sums[repeated] = np.add.reduceat(values[order[np.repeat(repeated, sizes)]], np.cumsum(runs) - runs, axis=0)
    return sorted_rows[starts], sums
