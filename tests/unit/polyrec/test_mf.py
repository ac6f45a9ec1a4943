"""Unit tests of the online MF core (pure numpy)."""

from dataclasses import replace

import numpy as np
import pytest

from polyrec.ids import id_normals
from polyrec.mf import MFConfig, OnlineMF, batch_gradients
from polyrec.runs import group_sum


def _objective(c: MFConfig, pu, qi, qj, bi, bj, w, neg_weight) -> float:
    """The documented batch objective, written independently of the code under test."""
    si = bi + (pu * qi).sum(1)
    sj = bj + pu @ qj.T
    if c.loss == "bpr":
        data = np.sum(neg_weight * w[:, None] * np.logaddexp(0.0, -(si[:, None] - sj)))
    else:
        data = np.sum(w * np.logaddexp(0.0, -si)) + neg_weight * np.sum(np.logaddexp(0.0, sj))
    reg = 0.5 * c.reg * (np.sum(pu**2) + np.sum(qi**2) + np.sum(qj**2))
    return data + reg + 0.5 * c.bias_reg * (np.sum(bi**2) + np.sum(bj**2))


@pytest.mark.parametrize("loss", ["bpr", "pointwise"])
def test_gradients_match_finite_differences(loss):
    rng = np.random.default_rng(0)
    c = MFConfig(dim=5, loss=loss, reg=0.07, bias_reg=0.03)
    B, P = 3, 4
    params = dict(pu=rng.normal(size=(B, 5)), qi=rng.normal(size=(B, 5)), qj=rng.normal(size=(P, 5)),
                  bi=rng.normal(size=B), bj=rng.normal(size=P))
    w, nw = np.array([1.0, 2.0, 3.0]), 0.5
    g = batch_gradients(c, **params, w=w, neg_weight=nw)
    analytic = {"pu": g.p, "qi": g.qi, "qj": g.qj, "bi": g.bi, "bj": g.bj}
    h = 1e-6
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            plus, minus = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            up, down = _objective(c, **plus, w=w, neg_weight=nw), _objective(c, **minus, w=w, neg_weight=nw)
            numeric[idx] = (up - down) / (2 * h)
        # the code returns ascent directions: minus the objective's gradient
        np.testing.assert_allclose(analytic[name], -numeric, rtol=1e-5, atol=1e-6, err_msg=name)
    data_loss = _objective(replace(c, reg=0.0, bias_reg=0.0), **params, w=w, neg_weight=nw) / B
    assert g.loss == pytest.approx(data_loss, rel=1e-6)


def test_learning_step_lowers_the_objective_of_the_batch():
    m = OnlineMF(MFConfig(dim=8, n_negatives=4, seed=1))
    users, items = ["u1", "u2", "u1"], ["a", "b", "c"]
    m.add_items([f"x{n}" for n in range(50)])
    first = m.learn_many(users, items).loss
    for _ in range(30):
        last = m.learn_many(users, items).loss
    assert last < 0.5 * first


def test_negatives_come_only_from_the_rows_given_and_every_row_by_default():
    def learned(negatives):
        m = OnlineMF(MFConfig(dim=8, n_negatives=4, seed=5))
        m.add_items([f"i{n}" for n in range(40)])
        before = m.item_factors.copy(), m.item_bias.copy()
        for _ in range(20):
            m.learn_many([f"u{n}" for n in range(10)], [f"i{n % 5}" for n in range(10)]) if negatives is None else \
                m.learn_rows(m.add_users([f"u{n}" for n in range(10)]), np.arange(10) % 5, np.ones(10, np.float32),
                             negatives=negatives)
        return m, before

    pool = np.arange(20)  # items 20-39 are never drawn, and none is a positive
    m, (q0, b0) = learned(pool)
    np.testing.assert_array_equal(m.item_factors[20:], q0[20:])
    np.testing.assert_array_equal(m.item_bias[20:], b0[20:])
    assert not np.array_equal(m.item_factors[5:20], q0[5:20])  # the pool's non-positives were pushed down
    default, _ = learned(None)
    every, _ = learned(np.arange(40))  # every row given: the same draws as the default
    np.testing.assert_array_equal(default.item_factors, every.item_factors)


def test_adagrad_step_size_is_bounded_for_many_events_of_one_user():
    m = OnlineMF(MFConfig(dim=8, user_lr=0.1, seed=3))
    m.add_items([f"i{n}" for n in range(100)])
    upd = m.learn_many(["u"] * 500, [f"i{n % 100}" for n in range(500)])
    moved = np.sqrt(np.mean((m.user_factors[upd.user_rows] - m.initial_factors(["u"], 0)) ** 2))
    # a fresh AdaGrad row moves by exactly lr per coordinate (RMS), however many events were summed
    assert moved == pytest.approx(0.1, rel=1e-3)


def test_unseen_ids_grow_storage_and_keep_existing_rows():
    c = MFConfig(dim=4, seed=9)
    m = OnlineMF(c)
    m.learn_many(["u0"], ["i0"])
    kept_user, kept_item = m.user_factors[0].copy(), m.item_factors[0].copy()
    users = [f"u{n}" for n in range(1000)]
    items = [f"i{n}" for n in range(3000)]
    rows = m.add_items(items)
    m.add_users(users)
    assert len(m.items) == 3000 and len(m.users) == 1000
    assert rows[0] == 0 and rows[-1] == 2999
    np.testing.assert_array_equal(m.user_factors[0], kept_user)
    np.testing.assert_array_equal(m.item_factors[0], kept_item)
    # a new row starts from the deterministic per-id vector, the same in any process
    np.testing.assert_array_equal(m.item_factors[2999], id_normals(["i2999"], 4, c.seed * 2 + 1, c.init_std)[0])
    assert m.item_bias[2999] == 0.0


def test_update_reports_the_increments_it_applied():
    m = OnlineMF(MFConfig(dim=6, seed=2))
    m.add_items([f"i{n}" for n in range(20)])
    before = m.item_factors.copy(), m.item_bias.copy()
    upd = m.learn_many(["a", "b", "a"], ["i1", "i2", "i3"], np.array([1.0, 2.0, 3.0]))
    after = m.item_factors, m.item_bias
    changed = np.flatnonzero(np.any(after[0] != before[0], axis=1))
    assert set(changed) <= set(upd.item_rows.tolist())
    np.testing.assert_allclose(after[0][upd.item_rows] - before[0][upd.item_rows], upd.item_delta, atol=1e-6)
    np.testing.assert_allclose(after[1][upd.item_rows] - before[1][upd.item_rows], upd.bias_delta, atol=1e-6)
    assert sorted(m.users.id_at(upd.user_rows)) == ["a", "b"]


def test_same_seed_same_model_and_different_seed_differs():
    def train(seed):
        m = OnlineMF(MFConfig(dim=8, seed=seed))
        rng = np.random.default_rng(5)
        for _ in range(20):
            m.learn_many([f"u{n}" for n in rng.integers(0, 30, 50)], [f"i{n}" for n in rng.integers(0, 80, 50)])
        return m

    a, b, c = train(1), train(1), train(2)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.allclose(a.item_factors, c.item_factors)


def test_snapshot_round_trip_continues_identically(tmp_path):
    m = OnlineMF(MFConfig(dim=8, seed=4))
    m.learn_many(["u1", "u2", "u3"], ["a", "b", "c"], np.array([1.0, 2.0, 3.0]))
    m.save(tmp_path / "snap.npz")
    restored = OnlineMF.load(tmp_path / "snap.npz")
    assert restored.config == m.config
    assert restored.users.ids == m.users.ids and restored.items.ids == m.items.ids
    m.learn_many(["u1", "u9"], ["c", "z"])
    restored.learn_many(["u1", "u9"], ["c", "z"])
    np.testing.assert_array_equal(restored.user_factors, m.user_factors)
    np.testing.assert_array_equal(restored.item_factors, m.item_factors)
    np.testing.assert_array_equal(restored.item_bias, m.item_bias)


def test_group_sum_equals_add_at():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 30, 500)
    vals = rng.normal(size=(500, 3))
    expected = np.zeros((30, 3))
    np.add.at(expected, rows, vals)
    uniq, sums = group_sum(rows, vals)
    got = np.zeros((30, 3))
    got[uniq] = sums
    np.testing.assert_allclose(got, expected)
    assert len(uniq) == len(np.unique(rows))


def test_unknown_loss_is_a_clear_error():
    m = OnlineMF(MFConfig(loss="hinge"))
    with pytest.raises(ValueError, match="unknown loss"):
        m.learn_many(["u"], ["i"])


def test_masks_skip_the_user_side_or_the_item_side_of_an_event():
    def fresh():
        m = OnlineMF(MFConfig(dim=4, seed=7))
        m.add_items([f"i{n}" for n in range(30)])
        m.add_users(["a", "b"])
        return m

    base = fresh()
    u, i, w = base.users.rows(["a", "b"]), base.items.rows(["i1", "i2"]), np.ones(2, np.float32)
    full = fresh()
    full.learn_rows(u, i, w)
    # user side of "b" only: a's row and every item row stay put, as if a's event and b's item half were done
    m = fresh()
    m.learn_rows(u, i, w, user_mask=np.array([False, True]), item_mask=np.array([False, False]))
    np.testing.assert_array_equal(m.user_factors[0], base.user_factors[0])
    np.testing.assert_array_equal(m.item_factors, base.item_factors)
    np.testing.assert_array_equal(m.user_factors[1], full.user_factors[1])
    # item side only: user rows stay put, items move as in the full step
    m = fresh()
    m.learn_rows(u, i, w, user_mask=np.array([False, False]), item_mask=np.array([True, True]))
    np.testing.assert_array_equal(m.user_factors, base.user_factors)
    np.testing.assert_array_equal(m.item_factors, full.item_factors)
