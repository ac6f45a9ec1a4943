"""Exploration: an item with no events yet takes the last place of the lists of the users it fits, a
young item that of the users whose best items it nearly is."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.explore import ExploreConfig, lift, pick, promote
from polyrec.history import History
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import recommend, recommend_rows, score_users
from polyrec.topk import top_k


def test_pick_keeps_only_users_the_fresh_item_fits():
    factor = np.array([[5.0, 4.0, 3.0, 2.0, 4.5, 1.0],    # fresh 4 is 2nd, fresh 5 last: 4
                       [5.0, 4.0, 3.0, 2.0, 0.0, 1.0],    # best fresh (5) is 6th: no one
                       [-np.inf, -np.inf, 3.0, 2.0, 0.0, 2.5]])  # seen items do not count: 5 is 2nd
    fresh = np.array([4, 5])
    users, cols = pick(factor, fresh, factor[:, fresh], fit=2 / 6)  # at most 1 of the 6 columns above
    assert users.tolist() == [0, 2] and cols.tolist() == [4, 5]
    assert pick(factor, fresh, factor[:, fresh], fit=0)[0].tolist() == []
    judged = np.array([[0.0, 0.0], [5.5, 0.0], [0.0, 0.0]])  # fit judged by other scores: user 1 gets item 4
    assert pick(factor, fresh, judged, fit=1 / 6)[0].tolist() == [1]


def test_pick_spreads_the_places_among_the_fresh_items_each_user_fits():
    rng = np.random.default_rng(0)
    factor = rng.normal(size=(3000, 50))
    fresh = np.array([10, 11, 12, 13])
    judged = np.column_stack([np.full(3000, 9.0), np.full(3000, 8.0), np.full(3000, 7.0),  # all fit everyone
                              np.full(3000, -9.0)])  # fits no one
    users, cols = pick(factor, fresh, judged, fit=0.1)
    assert len(users) == 3000
    shares = np.bincount(cols - 10, minlength=4) / 3000
    assert shares[3] == 0 and np.all(np.abs(shares[:3] - 1 / 3) < 0.04), shares  # not all to the best fit
    again = pick(factor, fresh, judged, fit=0.1)
    assert np.array_equal(again[1], cols)  # the same scores: the same picks


def test_lift_takes_the_place_and_moves_only_what_was_there():
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 1.0]], np.float32)
    lift(scores, (np.array([0]), np.array([4])), place=3)
    assert top_k(scores, 4)[0].tolist() == [[0, 1, 4, 2]]
    already = np.array([[9.0, 8.0, 7.0]], np.float32)
    lift(already, (np.array([0]), np.array([0])), place=2)  # better than the place: left alone
    assert already.tolist() == [[9.0, 8.0, 7.0]]
    few = np.array([[9.0, -np.inf, -np.inf, 0.5]], np.float32)  # fewer finite scores than the place
    lift(few, (np.array([0]), np.array([3])), place=3)
    assert top_k(few, 3)[0].tolist() == [[0, 3, -1]]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 6), st.floats(0, 1))
def test_explored_lists_keep_their_first_places(seed, n_users, place, fit):
    """Whatever the scores: each list keeps its first ``place - 1`` items; at most one other
    item enters, a fresh one, at the ``place``-th place, and only for a user it fits."""
    rng = np.random.default_rng(seed)
    n_items, dim, k = 15, 3, 6
    p = rng.normal(size=(n_users, dim)).astype(np.float32)
    q = rng.normal(size=(n_items, dim)).astype(np.float32)
    b = np.round(rng.normal(size=n_items), 1).astype(np.float32)
    fresh = np.sort(rng.choice(n_items, rng.integers(0, 5), replace=False))
    seen_u = np.sort(rng.integers(0, n_users, 10))
    seen = (seen_u, rng.choice(np.setdiff1d(np.arange(n_items), fresh), 10))
    plain, _ = recommend(p, q, b, seen, k)
    judged_bias = float(np.round(rng.normal(), 1))  # fresh items are judged with a typical bias, not their own
    explored, _ = recommend(p, q, b, seen, k, fresh=(fresh, q[fresh], judged_bias),
                            explore=ExploreConfig(fit=fit, place=place))
    factor = p @ q.T + b
    factor[seen] = -np.inf
    for u in range(n_users):
        keep = min(place - 1, k)
        assert explored[u, :keep].tolist() == plain[u, :keep].tolist()
        entered = set(explored[u].tolist()) - set(plain[u].tolist())
        assert len(entered) <= 1
        for item in entered:
            assert item in fresh and explored[u].tolist().index(item) == place - 1
            judged = p[u] @ q[item] + judged_bias  # a dot product: float32 rounding differs from the matrix's
            assert np.count_nonzero(factor[u] > judged + 1e-5) < fit * n_items


def test_a_fresh_item_reaches_the_users_it_fits_and_leaves_at_its_first_event():
    mf = OnlineMF(MFConfig(dim=2, seed=0))
    users = mf.add_users(["space-fan", "cook-fan", "a", "b"])
    items = mf.add_items(["rocket", "pizza", "moon", "pasta", "new"])
    mf.set_users(users, np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]), 0.0)
    mf.set_items(items, np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.9], [0.4, -0.05]]),  # new: space text
                 np.zeros(5))
    memory = Cooccurrence(CooccurrenceConfig(window=2, context=2), users=mf.users)
    consumers = Consumers(ConsumersConfig(young=1), 2)  # established from one event: median length 1
    history = History()
    u = np.array([2, 2, 3, 3, 0, 1])  # a: rocket, moon; b: rocket, pizza; the fans one item each
    i = np.array([0, 2, 0, 1, 0, 3])
    memory.learn_rows(u, i)
    consumers.learn_rows(i, mf.user_factors[u], np.ones(6, np.float32))
    history.add(u, i)
    fans = users[:2]

    def top(explore):
        return recommend_rows(mf, history, fans, 2, memory, consumers, explore)[0].tolist()

    assert top(None) == [[2, 1], [1, 0]]  # the space fan: the memory's moon and pizza; "new" nowhere
    assert top(ExploreConfig(fit=0.4, place=2, share=1.0)) == [[2, 4], [1, 0]]  # to the space fan only, last place
    assert top(ExploreConfig(fit=0.2, place=2, share=1.0)) == [[2, 1], [1, 0]]  # moon higher (new: 0.99 at length 1)
    assert top(ExploreConfig(fit=0, place=2)) == [[2, 1], [1, 0]]
    consumers.learn_rows(np.array([4]), mf.user_factors[fans[:1]], np.ones(1, np.float32))
    assert 4 not in consumers.fresh_factors(mf.item_factors, mf.item_bias)[0].tolist()
    history.add(fans[:1], np.array([4]))
    assert top(ExploreConfig(fit=0.4, place=2, share=1.0)) == [[2, 1], [1, 0]]  # seen now: excluded, no fresh item left


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        ExploreConfig(fit=-0.1)
    with pytest.raises(ValueError):
        ExploreConfig(fit=1.5)
    with pytest.raises(ValueError):
        ExploreConfig(place=0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 6), st.integers(0, 15), st.floats(0, 1))
def test_a_young_item_within_reach_takes_the_place_and_a_fresh_item_only_the_other_lists(seed, n_users, place,
                                                                                        reach, fit):
    """Each list keeps its first ``place - 1`` items; at most one other item enters, at the
    ``place``-th place: the best-scoring young item among the user's best ``reach`` (not already
    in place), or else a fresh item the user fits."""
    rng = np.random.default_rng(seed)
    n_items, dim, k = 15, 3, 6
    p = rng.normal(size=(n_users, dim)).astype(np.float32)
    q = rng.normal(size=(n_items, dim)).astype(np.float32)
    b = np.round(rng.normal(size=n_items), 1).astype(np.float32)
    rows = rng.permutation(n_items)
    fresh, young_rows = np.sort(rows[:rng.integers(0, 4)]), np.sort(rows[4:4 + rng.integers(0, 4)])
    young = (young_rows, rng.normal(size=(len(young_rows), dim)).astype(np.float32))
    seen_u = np.sort(rng.integers(0, n_users, 10))
    seen = (seen_u, rng.choice(np.setdiff1d(np.arange(n_items), fresh), 10))
    plain, _ = recommend(p, q, b, seen, k, young=young)
    explored, _ = recommend(p, q, b, seen, k, young=young, fresh=(fresh, q[fresh], 0.0),
                            explore=ExploreConfig(fit=fit, place=place, reach=reach))
    scores = score_users(p, q, b, young=young, seen=seen)
    for u in range(n_users):
        assert explored[u, :min(place - 1, k)].tolist() == plain[u, :min(place - 1, k)].tolist()
        entered = set(explored[u].tolist()) - set(plain[u].tolist())
        assert len(entered) <= 1
        rank = {int(i): int(np.count_nonzero(scores[u] > scores[u, i])) for i in young_rows}
        within = [i for i, r in rank.items() if place - 1 < r < reach and np.isfinite(scores[u, i])]
        if within:  # the best of them takes the place
            best = max(within, key=lambda i: scores[u, i])
            assert explored[u].tolist().index(best) == place - 1 or place > k
        for item in entered:
            assert explored[u].tolist().index(item) == place - 1
            assert item in young_rows or (item in fresh and not within)


def test_young_items_are_promoted_only_to_users_they_nearly_reach():
    scores = np.array([[9.0, 8.0, 7.0, 6.0, 5.0, 4.0],
                       [9.0, 8.0, 7.0, 6.0, 5.0, 4.0]])
    young = np.array([4, 5])
    assert promote(scores.copy(), young, 2, top_k(scores, 4))[0].tolist() == []  # out of reach
    assert promote(scores, young, 2, top_k(scores, 5))[1].tolist() == [4, 4]  # 5th: within the best 5
    assert top_k(scores, 3)[0].tolist() == [[0, 4, 1], [0, 4, 1]]  # raised to the 2nd place
    scores[:, 4] = [4.0, -np.inf]  # back, and seen by user 1
    users, cols = promote(scores, young, 2, top_k(scores, 6))
    assert users.tolist() == [0, 1] and cols.tolist() == [4, 5]


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 12), st.integers(1, 8), st.integers(0, 20), st.integers(1, 12),
       st.floats(0, 1))
def test_the_top_k_after_the_promotion_is_the_full_selection_of_the_final_scores(seed, n_users, place, reach, k, fit):
    """``recommend`` takes the top ``k`` from the columns the promotion already selected (and the
    lifted fresh one) instead of a second pass over the catalogue: the same indices and scores as
    :func:`top_k` of :func:`score_users`, ties (rounded scores) and seen items included."""
    rng = np.random.default_rng(seed)
    n_items, dim = 18, 3
    p = np.round(rng.normal(size=(n_users, dim)), 1).astype(np.float32)
    q = np.round(rng.normal(size=(n_items, dim)), 1).astype(np.float32)
    b = np.round(rng.normal(size=n_items), 0).astype(np.float32)
    rows = rng.permutation(n_items)
    fresh, young_rows = np.sort(rows[:rng.integers(0, 4)]), np.sort(rows[4:4 + rng.integers(0, 5)])
    young = (young_rows, np.round(rng.normal(size=(len(young_rows), dim)), 1).astype(np.float32))
    seen_u = np.sort(rng.integers(0, n_users, 3 * n_users))
    seen = (seen_u, rng.choice(np.setdiff1d(np.arange(n_items), fresh), len(seen_u)))
    explore = ExploreConfig(fit=fit, place=place, reach=reach)
    got = recommend(p, q, b, seen, k, young=young, fresh=(fresh, q[fresh], 0.0), explore=explore)
    want = top_k(score_users(p, q, b, young=young, seen=seen, fresh=(fresh, q[fresh], 0.0), explore=explore), k)
    assert got[0].tolist() == want[0].tolist()
    assert np.array_equal(got[1], want[1])


def test_only_the_share_of_lists_that_explore_give_a_fresh_item_the_place():
    """``share`` bounds what exploring costs: about that share of the lists a fresh item fits
    explore, the others keep their own last place; the draw does not depend on a row's position."""
    from polyrec.explore import exploring

    rng = np.random.default_rng(3)
    factor = rng.normal(size=(4000, 50)).astype(np.float32)
    fresh = np.arange(40, 50)
    everyone = pick(factor, fresh, factor[:, fresh], fit=0.5)[0]
    assert len(everyone) > 3900
    for share in (0.1, 0.5):
        users = pick(factor, fresh, factor[:, fresh], fit=0.5, share=share)[0]
        assert set(users) <= set(everyone) and abs(len(users) / len(everyone) - share) < 0.03
    assert len(pick(factor, fresh, factor[:, fresh], fit=0.5, share=0.0)[0]) == 0
    drawn = exploring(factor[:, fresh], 0.5)
    assert exploring(factor[::-1, fresh], 0.5).tolist() == drawn[::-1].tolist()  # the row's values, not its place
