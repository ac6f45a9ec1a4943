"""Cold start: a ridge map from item text embeddings into the MF item space. Pure numpy.

An item that arrives with text but no interactions starts from ``project(embedding)``, fitted on
the items that already have both a text embedding and collaboratively learned factors. Targets
are item vectors with the bias as the last column (``mf_targets``), so a projected item also
gets a plausible bias. Items with more events have better-learned factors and count more
(``count_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Projection:
    """``y = (x - x_mean) @ weights + y_mean``: text embedding ``x`` to item vector ``y``."""

    weights: np.ndarray  # (embedding dim, target dim)
    x_mean: np.ndarray
    y_mean: np.ndarray
    n_items: int  # items it was fitted on

    def project(self, embeddings: np.ndarray) -> np.ndarray:
        """Item vectors (float32, one row per embedding row)."""
        x = np.atleast_2d(np.asarray(embeddings, np.float32))
        return ((x - self.x_mean) @ self.weights + self.y_mean).astype(np.float32)


def fit_projection(embeddings: np.ndarray, targets: np.ndarray, alpha: float = 1.0,
                   sample_weight: np.ndarray | None = None) -> Projection:
    """Weighted ridge regression with an unpenalised intercept.

    ``alpha`` is relative: the penalty is ``alpha * mean eigenvalue`` of the weighted, centred
    Gram matrix, so one value works whatever the number of items or the embedding scale.
    Solved in whichever of the primal (embedding dim) or dual (items) form is smaller.
    """
    x = np.asarray(embeddings, np.float64)
    y = np.asarray(targets, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(f"embeddings {x.shape} and targets {y.shape} must be 2-D with one row per item")
    if not alpha > 0:
        raise ValueError(f"alpha must be positive, got {alpha}")
    w = np.ones(len(x)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if w.shape != (len(x),) or (w < 0).any():
        raise ValueError("sample_weight must be non-negative, one per item")
    finite = np.isfinite(x).all(1) & np.isfinite(y).all(1)  # one NaN row would poison every projection
    x, y, w = x[finite], y[finite], w[finite]
    if len(x) < 2 or w.sum() <= 0:
        raise ValueError("a projection needs at least two items with finite values and positive weight")
    w = w / w.sum()
    x_mean, y_mean = w @ x, w @ y
    sw = np.sqrt(w)[:, None]
    xc, yc = (x - x_mean) * sw, (y - y_mean) * sw
    n, d = xc.shape
    if d <= n:
        gram = xc.T @ xc
        penalty = alpha * max(np.trace(gram) / d, 1e-12)
        weights = np.linalg.solve(gram + penalty * np.eye(d), xc.T @ yc)
    else:
        gram = xc @ xc.T
        penalty = alpha * max(np.trace(gram) / d, 1e-12)
        weights = xc.T @ np.linalg.solve(gram + penalty * np.eye(n), yc)
    return Projection(weights.astype(np.float32), x_mean.astype(np.float32), y_mean.astype(np.float32), n)


def count_weights(counts: np.ndarray, min_count: int = 5, cap: int = 50) -> np.ndarray:
    """Trust in an item's learned factors: 0 below ``min_count`` events, then growing as
    ``log1p(count)`` up to ``cap`` events."""
    c = np.asarray(counts, np.float64)
    return np.where(c >= min_count, np.log1p(np.minimum(c, cap)), 0.0)


def mf_targets(factors: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Item vectors as projection targets: factors with the bias appended."""
    return np.column_stack([factors, bias]).astype(np.float32)


def refit_projection(embeddings: Sequence[np.ndarray] | np.ndarray, counts: np.ndarray, factors: np.ndarray,
                     bias: np.ndarray, alpha: float = 1.0, min_count: int = 5) -> Projection | None:
    """The projection fitted on candidate items (one per row of every argument: text embedding,
    events seen, learned factors and bias), each weighted by ``count_weights``; None if fewer than two
    have ``min_count`` events. The one refit of the stream (stream/items.py) and the cold-start
    evaluation (polyrec/evaluation/coldstart.py)."""
    weights = count_weights(counts, min_count)
    keep = np.flatnonzero(weights > 0)
    if len(keep) < 2:
        return None
    x = np.stack([embeddings[k] for k in keep.tolist()])
    return fit_projection(x, mf_targets(factors[keep], bias[keep]), alpha, weights[keep])
