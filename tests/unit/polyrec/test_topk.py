"""Top-K, ranks, seen-item exclusion and history."""

import numpy as np

from polyrec.history import History
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import recommend_rows
from polyrec.topk import UNRANKED, mask_rows, rank_of, top_k


def test_top_k_orders_and_breaks_ties_by_column():
    s = np.array([[0.1, 0.9, 0.5, 0.9, -1.0]])
    idx, best = top_k(s, 3)
    assert idx.tolist() == [[1, 3, 2]]
    np.testing.assert_allclose(best, [[0.9, 0.9, 0.5]])


def test_top_k_pads_when_too_few_candidates():
    s = np.array([[1.0, -np.inf, 2.0]])
    idx, _ = top_k(s, 4)
    assert idx.tolist() == [[2, 0, -1, -1]]


def _reference_top_k(scores: np.ndarray, k: int) -> list[list[int]]:
    """Sort each whole row: best first, ties by column, -inf left out."""
    out = []
    for row in scores:
        order = np.lexsort((np.arange(len(row)), -row))[:k]
        out.append([int(c) if np.isfinite(row[c]) else -1 for c in order] + [-1] * (k - len(order)))
    return out


def test_top_k_equals_a_full_sort_on_small_and_large_catalogues():
    rng = np.random.default_rng(7)
    for n_cols in (5, 300, 1281, 3706):  # both sides of the grouped pass's threshold (4 * 32 * k)
        s = np.round(rng.normal(size=(40, n_cols)), 1).astype(np.float32)  # many ties
        mask_rows(s, rng.integers(0, 40, 20 * n_cols), rng.integers(0, n_cols, 20 * n_cols))
        s[3] = -np.inf  # everything seen
        s[4, 2:] = -np.inf  # two left
        s[5] = 0.5  # all tied
        for k in (1, 10):
            idx, best = top_k(s, k)
            assert idx.tolist() == _reference_top_k(s, k), (n_cols, k)
            expected = np.where(idx >= 0, np.take_along_axis(s, np.maximum(idx, 0), 1), -np.inf)
            np.testing.assert_array_equal(best, expected)


def test_rank_agrees_with_top_k():
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=(50, 40)), 1)  # many ties
    mask_rows(s, rng.integers(0, 50, 200), rng.integers(0, 40, 200))
    idx, _ = top_k(s, 10)
    targets = rng.integers(0, 40, 50)
    ranks = rank_of(s, targets)
    for row in range(50):
        in_top = targets[row] in idx[row]
        assert in_top == (ranks[row] < 10)
        if in_top:
            assert idx[row].tolist().index(targets[row]) == ranks[row]
    assert rank_of(s, np.full(50, -1)).tolist() == [UNRANKED] * 50
    assert rank_of(np.zeros((1, 3)), np.array([7])).tolist() == [UNRANKED]  # small catalogs too


def test_history_is_bounded_deduplicated_and_ordered():
    h = History(max_len=3)
    h.add(np.array([0, 0, 1, 0, 0]), np.array([5, 6, 7, 5, 8]))
    assert h.get(0) == [6, 5, 8]
    assert h.get(1) == [7]
    assert h.get(42) == []
    rows, cols = h.pairs(np.array([1, 0]))
    assert rows.tolist() == [0, 1, 1, 1] and cols.tolist() == [7, 6, 5, 8]


def test_recommendations_exclude_seen_items():
    m = OnlineMF(MFConfig(dim=4, seed=0))
    m.add_items([f"i{n}" for n in range(12)])
    users = m.add_users(["alice", "bob"])
    m.set_items(np.arange(12), m.item_factors, np.arange(12)[::-1])  # i0 is the most popular
    m.set_users(np.arange(len(m.users)), 0.0, m.user_accum)
    h = History()
    h.add(np.array([users[0]] * 3), m.items.rows(["i0", "i1", "i5"]))
    idx, _ = recommend_rows(m, h, users, 4)
    assert m.items.id_at(idx[0]) == ["i2", "i3", "i4", "i6"]
    assert m.items.id_at(idx[1]) == ["i0", "i1", "i2", "i3"]


def test_chunked_scoring_gives_the_same_recommendations(monkeypatch):
    import polyrec.recommend as recommend

    rng = np.random.default_rng(3)
    m = OnlineMF(MFConfig(dim=4, seed=0))
    m.add_items([f"i{n}" for n in range(50)])
    users = m.add_users([f"u{n}" for n in range(7)])
    m.set_users(np.arange(len(m.users)), rng.normal(size=m.user_factors.shape), m.user_accum)
    h = History()
    with_history = np.delete(users, [2, 3])  # users 2 and 3 (the second chunk) have seen nothing
    h.add(np.repeat(with_history, 3), rng.integers(0, 50, 15))
    whole = recommend_rows(m, h, users, 5)
    monkeypatch.setattr(recommend, "SCORE_CELLS", 2 * 50)  # two users per chunk: 4 chunks
    chunked = recommend_rows(m, h, users, 5)
    np.testing.assert_array_equal(whole[0], chunked[0])
    np.testing.assert_array_equal(whole[1], chunked[1])
    for row, user in enumerate(users):  # nobody is recommended what they have seen
        assert not set(whole[0][row]) & set(h.get(user))
    empty = recommend_rows(m, h, users[:0], 5)
    assert empty[0].shape == (0, 5)
