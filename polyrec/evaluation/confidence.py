"""95% confidence intervals of prequential means, by a bootstrap over users. Pure numpy.

Scored events of one user are not independent (the same taste, often the same session), so the
unit resampled is the user: each resample draws the users with replacement and takes the mean
over all their scored events. A paired difference uses the same draw for both models, so what the
two share (which users are easy) cancels.

>>> hits = {"a": np.array([1.0, 0.0, 1.0, 1.0]), "b": np.array([0.0, 0.0, 1.0, 1.0])}
>>> users = np.array([0, 0, 1, 2])
>>> ci = user_bootstrap(hits, users, resamples=500, seed=1)
>>> ci["a"]["mean"], ci["a"]["low"] <= 0.75 <= ci["a"]["high"]
(0.75, True)
>>> diff = paired_difference(hits["a"], hits["b"], users, resamples=500, seed=1)
>>> diff["mean"], diff["low"] <= diff["mean"] <= diff["high"]
(0.25, True)
"""

from __future__ import annotations

import numpy as np


def _draws(users: np.ndarray, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each event's user index, each resample's event count, and (resamples x users) multiplicities."""
    _, inverse, counts = np.unique(users, return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    n = len(counts)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)
    return inverse, weights @ counts, weights


def _interval(values: np.ndarray, users: np.ndarray, resamples: int, seed: int) -> dict[str, float]:
    inverse, events, weights = _draws(users, resamples, seed)
    per_user = np.bincount(inverse, weights=values)
    means = (weights @ per_user) / events
    low, high = np.quantile(means, [0.025, 0.975])
    return {"mean": float(values.mean()), "low": float(low), "high": float(high)}


def user_bootstrap(values: dict[str, np.ndarray], users: np.ndarray, *, resamples: int = 2000,
                   seed: int = 0) -> dict[str, dict[str, float]]:
    """Mean and 95% percentile interval of each model's per-event ``values`` (all over the same
    scored events, whose users are ``users``)."""
    return {name: _interval(v, users, resamples, seed) for name, v in values.items()}


def paired_difference(a: np.ndarray, b: np.ndarray, users: np.ndarray, *, resamples: int = 2000,
                      seed: int = 0) -> dict[str, float]:
    """Mean and 95% interval of ``a - b`` over the same scored events, one draw for both."""
    return _interval(np.asarray(a, np.float64) - np.asarray(b, np.float64), users, resamples, seed)
