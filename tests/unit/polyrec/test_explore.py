"""Exploration: an item with no events yet takes the last place of the lists of its audience, a
young item that of the users whose best items it nearly is."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.explore import (
    AUDIENCE_SAMPLE,
    ExploreConfig,
    FitBars,
    Fresh,
    audience_thresholds,
    lift,
    pick,
    promote,
    user_bars,
)
from polyrec.history import History
from polyrec.mf import MFConfig, OnlineMF
from polyrec.recommend import recommend, recommend_rows, score_users
from polyrec.topk import top_k


def test_pick_keeps_only_users_in_a_fresh_items_audience():
    scores = np.array([[3.0, 1.0],    # item 4's audience only
                       [1.0, 1.0],    # neither
                       [0.0, 2.0],    # item 5's
                       [np.inf * -1, 9.0]])  # not a finite score: not in item 4's audience
    fresh, bars = np.array([4, 5]), np.array([2.0, 2.0])
    users, cols = pick(fresh, scores, bars)
    assert users.tolist() == [0, 2, 3] and cols.tolist() == [4, 5, 5]
    assert pick(fresh, scores, np.full(2, np.inf))[0].tolist() == []  # no audience: fit 0
    assert pick(fresh[:0], scores[:, :0], bars[:0])[0].tolist() == []


@pytest.mark.parametrize("n_users", [500, 3000])
def test_every_fresh_item_reaches_the_fit_share_of_users_whatever_its_direction(n_users):
    """The audience is relative to the item: a text that points where few users' tastes are reaches
    as many users as any other, those it clears their own fit bar by most."""
    rng = np.random.default_rng(1)
    users = rng.normal(size=(n_users, 8)).astype(np.float32)
    users[:, 0] += 2.0  # most users lean one way
    catalogue = rng.normal(size=(300, 8)).astype(np.float32)
    bars = FitBars()
    bars.record(np.arange(n_users), user_bars(users @ catalogue.T, 0.1))
    factors = rng.normal(size=(5, 8)).astype(np.float32)
    factors[4] = -users.mean(axis=0)  # an item pointing away from almost everyone
    every = users @ factors.T - bars.values[:n_users, None]  # every user's margin
    assert np.count_nonzero(every[:, 4] >= 0) < 0.01 * n_users  # it clears almost no one's bar
    audience = audience_thresholds(bars.margins(users, factors, 0.0), 0.1)
    reached = (every >= audience).mean(axis=0)
    if n_users <= AUDIENCE_SAMPLE:  # every user judges: exactly the share
        assert reached.tolist() == [0.1] * 5
    else:  # an even sample of them: about the share
        assert np.all(np.abs(reached - 0.1) < 0.02), reached
    best = np.argsort(-every[:, 4])[: int(0.1 * n_users) - 50]
    assert np.all(every[best, 4] >= audience[4])  # those it clears their bar by most, not any
    assert np.isinf(audience_thresholds(every, 0.0)).all() and np.isinf(audience_thresholds(every[:0], 0.1)).all()
    bars.forget(3)
    if n_users <= AUDIENCE_SAMPLE:
        assert bars.margins(users, factors, 0.0).shape == (n_users - 1, 5)  # an erased user's bar is gone


def test_a_users_fit_bar_is_their_fit_share_th_best_unseen_score():
    factor = np.array([[5.0, 4.0, -np.inf, 3.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0], [-np.inf] * 4 + [1.0]])
    assert user_bars(factor, 0.4).tolist() == [4.0, 4.0, -np.inf]  # the 2nd best of 5; fewer than 2 finite
    assert user_bars(factor, 0.0).tolist() == [5.0, 5.0, 1.0]  # at least the best
    bars = FitBars()
    bars.record(np.array([70, 2, 5]), user_bars(factor, 0.4))
    assert np.isnan(bars.values[[0, 1, 3, 4, 6]]).all() and bars.values[[70, 2]].tolist() == [4.0, 4.0]
    assert np.isnan(bars.values[5])  # no finite bar: not kept


def test_pick_spreads_the_places_among_the_fresh_items_each_user_fits():
    fresh = np.array([10, 11, 12, 13])
    judged = np.column_stack([np.full(3000, 9.0), np.full(3000, 8.0), np.full(3000, 7.0),  # all fit everyone
                              np.full(3000, -9.0)])  # fits no one
    bars = np.array([0.0, 0.0, 0.0, 0.0])
    users, cols = pick(fresh, judged, bars)
    assert len(users) == 3000
    shares = np.bincount(cols - 10, minlength=4) / 3000
    assert shares[3] == 0 and np.all(np.abs(shares[:3] - 1 / 3) < 0.04), shares  # not all to the best fit
    again = pick(fresh, judged, bars)
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
    item enters, a fresh one, at the ``place``-th place, and only for a user in its audience."""
    rng = np.random.default_rng(seed)
    n_items, dim, k = 15, 3, 6
    p = rng.normal(size=(n_users, dim)).astype(np.float32)
    q = rng.normal(size=(n_items, dim)).astype(np.float32)
    b = np.round(rng.normal(size=n_items), 1).astype(np.float32)
    fresh = np.sort(rng.choice(n_items, rng.integers(0, 5), replace=False))
    seen_u = np.sort(rng.integers(0, n_users, 10))
    seen = (seen_u, rng.choice(np.setdiff1d(np.arange(n_items), fresh), 10))
    plain, _ = recommend(p, q, b, seen, k)
    explored, _ = recommend(p, q, b, seen, k, fresh=Fresh(fresh, q[fresh], 0.0),
                            explore=ExploreConfig(fit=fit, place=place))
    factor = p @ q.T + b
    factor[seen] = -np.inf
    margins = p @ q[fresh].T - user_bars(factor, fit)[:, None]  # judged among the batch's users
    audience = audience_thresholds(margins, fit)
    for u in range(n_users):
        keep = min(place - 1, k)
        assert explored[u, :keep].tolist() == plain[u, :keep].tolist()
        entered = set(explored[u].tolist()) - set(plain[u].tolist())
        assert len(entered) <= 1
        for item in entered:
            assert item in fresh and explored[u].tolist().index(item) == place - 1
            j = fresh.tolist().index(item)
            assert margins[u, j] >= audience[j] - 1e-5  # in its audience (float32 rounding of another product)


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
    # judged at length 1: it clears the space fan's fit bar (their 2nd best unseen, moon 1.0 and
    # itself 0.99: 0.4) by 0.59, the cook fan's (pizza 1, rocket 0: 0) by -0.12; its audience, the
    # best quarter of the batch's 2 users: the space fan, last place
    assert top(ExploreConfig(fit=0.25, place=2, share=1.0)) == [[2, 4], [1, 0]]
    assert top(ExploreConfig(fit=1.0, place=2, share=1.0)) == [[2, 4], [1, 4]]  # everyone's: the cook fan too
    assert top(ExploreConfig(fit=0, place=2)) == [[2, 1], [1, 0]]
    consumers.learn_rows(np.array([4]), mf.user_factors[fans[:1]], np.ones(1, np.float32))
    assert 4 not in consumers.fresh_factors(mf.item_factors, mf.item_bias)[0].tolist()
    history.add(fans[:1], np.array([4]))
    assert top(ExploreConfig(fit=1.0, place=2, share=1.0)) == [[2, 1], [1, 0]]  # not fresh now, and seen by one


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
    explored, _ = recommend(p, q, b, seen, k, young=young, fresh=Fresh(fresh, q[fresh], 0.0),
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
    judged = Fresh(fresh, q[fresh], 0.0)
    got = recommend(p, q, b, seen, k, young=young, fresh=judged, explore=explore)
    want = top_k(score_users(p, q, b, young=young, seen=seen, fresh=judged, explore=explore), k)
    assert got[0].tolist() == want[0].tolist()
    assert np.array_equal(got[1], want[1])


def test_only_the_share_of_lists_that_explore_give_a_fresh_item_the_place():
    """``share`` bounds what exploring costs: about that share of the lists a fresh item fits
    explore, the others keep their own last place; the draw does not depend on a row's position."""
    from polyrec.explore import exploring

    rng = np.random.default_rng(3)
    scores = rng.normal(size=(4000, 10)).astype(np.float32)
    fresh, bars = np.arange(40, 50), np.zeros(10, np.float32)  # each item's audience: about half the users
    everyone = pick(fresh, scores, bars)[0]
    assert len(everyone) > 3900
    for share in (0.1, 0.5):
        users = pick(fresh, scores, bars, share=share)[0]
        assert set(users) <= set(everyone) and abs(len(users) / len(everyone) - share) < 0.03
    assert len(pick(fresh, scores, bars, share=0.0)[0]) == 0
    drawn = exploring(scores, 0.5)
    assert exploring(scores[::-1], 0.5).tolist() == drawn[::-1].tolist()  # the row's values, not its place
