"""The cold-start projection: ridge regression from text embeddings to item vectors."""

import numpy as np
import pytest

from polyrec.projection import count_weights, fit_projection, mf_targets


def _linear(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    true = rng.normal(size=(d, k))
    return x, x @ true + 0.5, true


def test_recovers_a_linear_map_with_a_small_penalty():
    x, y, _ = _linear(400, 16, 5)
    p = fit_projection(x, y, alpha=1e-6)
    np.testing.assert_allclose(p.project(x), y, atol=1e-3)
    assert p.n_items == 400


def test_primal_and_dual_forms_agree():
    x, y, _ = _linear(30, 20, 4)
    wide = fit_projection(x[:, :20], y, alpha=0.3)  # 20 dims <= 30 items: primal
    x_dual, y_dual = x[:12], y[:12]  # 20 dims > 12 items: dual
    dual = fit_projection(x_dual, y_dual, alpha=0.3)
    primal = fit_projection(np.vstack([x_dual, x_dual]), np.vstack([y_dual, y_dual]), alpha=0.3)
    np.testing.assert_allclose(dual.project(x), primal.project(x), rtol=1e-4, atol=1e-4)
    assert wide.weights.shape == (20, 4)


def test_a_large_penalty_shrinks_to_the_weighted_mean():
    x, y, _ = _linear(50, 8, 3)
    w = np.r_[np.zeros(25), np.ones(25)]
    p = fit_projection(x, y, alpha=1e9, sample_weight=w)
    np.testing.assert_allclose(p.project(x[:3]), np.tile(y[25:].mean(0), (3, 1)), atol=1e-4)


def test_zero_weight_items_do_not_influence_the_fit():
    x, y, _ = _linear(60, 6, 2)
    y_noisy = y.copy()
    y_noisy[:20] += 100.0
    w = np.r_[np.zeros(20), np.ones(40)]
    a = fit_projection(x, y_noisy, alpha=0.01, sample_weight=w)
    b = fit_projection(x[20:], y[20:], alpha=0.01)
    np.testing.assert_allclose(a.project(x), b.project(x), rtol=1e-4, atol=1e-4)


def test_nearby_embeddings_land_near_their_neighbours_targets():
    # two clusters of texts with two clusters of learned factors: a new point of cluster A
    # must land nearer cluster A's factors
    rng = np.random.default_rng(1)
    centre_a, centre_b = rng.normal(size=64), rng.normal(size=64)
    xa, xb = centre_a + 0.3 * rng.normal(size=(20, 64)), centre_b + 0.3 * rng.normal(size=(20, 64))
    ya, yb = np.tile([1.0, 0.0, 0.2], (20, 1)), np.tile([0.0, 1.0, -0.2], (20, 1))
    p = fit_projection(np.vstack([xa, xb]), np.vstack([ya, yb]), alpha=1.0)
    new = p.project(centre_a + 0.3 * rng.normal(size=64))[0]
    assert np.linalg.norm(new - ya[0]) < np.linalg.norm(new - yb[0])


@pytest.mark.parametrize("bad, error", [
    (dict(embeddings=np.zeros((1, 3)), targets=np.zeros((1, 2))), "at least two items"),
    (dict(embeddings=np.zeros((4, 3)), targets=np.zeros((3, 2))), "one row per item"),
    (dict(embeddings=np.zeros((4, 3)), targets=np.zeros((4, 2)), sample_weight=np.zeros(4)), "at least two items"),
    (dict(embeddings=np.zeros((4, 3)), targets=np.zeros((4, 2)), sample_weight=-np.ones(4)), "non-negative"),
    (dict(embeddings=np.zeros((4, 3)), targets=np.zeros((4, 2)), alpha=0.0), "alpha must be positive"),
    (dict(embeddings=np.full((4, 3), np.nan), targets=np.zeros((4, 2))), "at least two items"),  # nothing finite
])
def test_bad_inputs_raise(bad, error):
    with pytest.raises(ValueError, match=error):
        fit_projection(**bad)


def test_rows_with_non_finite_numbers_are_left_out_of_the_fit():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 3))
    clean = fit_projection(x, y, alpha=0.5)
    x_bad, y_bad = np.vstack([x, np.full((1, 6), np.nan)]), np.vstack([y, np.zeros((1, 3))])
    y_bad2 = np.vstack([y, [[np.inf, 0, 0]]])
    for xs, ys in ((x_bad, y_bad), (np.vstack([x, x[:1]]), y_bad2)):
        p = fit_projection(xs, ys, alpha=0.5)
        assert np.isfinite(p.project(x)).all()
        np.testing.assert_allclose(p.project(x), clean.project(x), rtol=1e-5, atol=1e-6)


def test_count_weights_and_targets():
    w = count_weights(np.array([0, 4, 5, 50, 5000]), min_count=5, cap=50)
    assert w[0] == w[1] == 0 and 0 < w[2] < w[3] == w[4]
    t = mf_targets(np.ones((2, 3)), np.array([0.5, -0.5]))
    assert t.shape == (2, 4) and t[1, 3] == np.float32(-0.5)
