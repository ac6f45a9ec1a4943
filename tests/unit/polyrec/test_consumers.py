"""Young items score with their consumers' direction, established ones with what they learned."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from polyrec.consumers import Consumers, ConsumersConfig
from polyrec.recommend import score_users

DIM = 4


def _established(consumers: Consumers, rows: list[int], events: int) -> None:
    for row in rows:
        consumers.learn_rows(np.full(events, row), np.ones((events, DIM), np.float32), np.ones(events, np.float32))


def test_a_young_item_points_where_its_users_point_at_an_established_length_trusted_by_its_events():
    c = Consumers(ConsumersConfig(young=5, shrink=2.0), DIM)
    factors = np.zeros((6, DIM), np.float32)
    factors[:3] = np.diag([1.0, 2.0, 3.0, 0.0])[:3]  # three established items of length 1, 2, 3
    _established(c, [0, 1, 2], events=5)
    users = np.array([[0, 0, 4, 0], [0, 0, 0, 1], [0, 0, 2, 1]], np.float32)
    c.learn_rows(np.array([3, 3, 4]), users, np.array([1.0, 3.0, 1.0], np.float32))  # item 5: no event yet
    rows, young = c.young_factors(factors)
    assert rows.tolist() == [3, 4]
    expected_3 = np.array([0, 0, 4, 3]) / 5 * 2.0 * 2 / (2 + 2)  # weighted sum's direction, median length 2
    expected_4 = np.array([0, 0, 2, 1]) / np.sqrt(5) * 2.0 * 1 / (1 + 2)
    np.testing.assert_allclose(young, [expected_3, expected_4], rtol=1e-6)


def test_a_fresh_item_is_judged_by_its_own_direction_at_an_established_length_and_bias():
    c = Consumers(ConsumersConfig(young=5), DIM)
    factors = np.zeros((6, DIM), np.float32)
    factors[:3] = np.diag([1.0, 2.0, 3.0, 0.0])[:3]  # three established items of length 1, 2, 3
    factors[4] = [0.0, 0.3, 0.4, 0.0]  # a text start, shrunk: length 0.5
    bias = np.array([0.1, 0.9, 0.4, 2.0, -5.0, 0.0], np.float32)  # the text start's own guess: -5
    assert c.fresh_factors(factors, bias)[0].tolist() == []  # no established item yet: nothing to measure with
    _established(c, [0, 1, 2], events=5)
    c.learn_rows(np.array([3]), np.ones((1, DIM), np.float32), np.ones(1, np.float32))  # young, not fresh
    rows, judged, judged_bias = c.fresh_factors(factors, bias)
    assert rows.tolist() == [4]  # item 5's factors are zero: no direction
    np.testing.assert_allclose(judged, [[0.0, 1.2, 1.6, 0.0]], rtol=1e-6)  # median length 2
    assert judged_bias == pytest.approx(0.4)  # the established items' median bias, not its own


def test_an_item_is_young_until_its_young_th_event_and_counts_only_its_young_events():
    c = Consumers(ConsumersConfig(young=3, shrink=0.0), DIM)
    _established(c, [0, 1], events=3)
    factors = np.eye(DIM, dtype=np.float32)[:3]
    for n in range(1, 4):
        c.learn_rows(np.array([2]), np.full((1, DIM), float(n), np.float32), np.ones(1, np.float32))
        rows, _ = c.young_factors(factors)
        assert rows.tolist() == ([2] if n < 3 else [])
    np.testing.assert_array_equal(c.sums[2], np.full(DIM, 1.0 + 2.0 + 3.0))  # all three were young events
    c.learn_rows(np.array([2]), np.ones((1, DIM), np.float32), np.ones(1, np.float32))
    assert c.counts[2] == 4 and c.sums[2][0] == 6.0  # an established item's events add to its count only


@pytest.mark.parametrize("config, established", [(ConsumersConfig(young=0), 3), (ConsumersConfig(young=5), 1)])
def test_no_item_is_young_when_off_or_without_established_items_to_measure_length(config, established):
    c = Consumers(config, DIM)
    _established(c, list(range(established)), events=5)
    c.learn_rows(np.array([3]), np.ones((1, DIM), np.float32), np.ones(1, np.float32))
    rows, factors = c.young_factors(np.ones((4, DIM), np.float32))
    assert len(rows) == 0 and factors.shape == (0, DIM)


def test_shifted_contributions_add_up_to_learning_them_in_one_place():
    rng = np.random.default_rng(0)
    rows, users, w = rng.integers(0, 6, 40), rng.normal(size=(40, DIM)).astype(np.float32), np.ones(40, np.float32)
    one = Consumers(ConsumersConfig(young=100), DIM)
    one.learn_rows(rows, users, w)
    a, b, both = (Consumers(ConsumersConfig(young=100), DIM) for _ in range(3))
    for part, sl in ((a, slice(0, 25)), (b, slice(25, 40))):
        touched, sums = part.learn_rows(rows[sl], users[sl], w[sl])
        both.shift(touched, sums, np.bincount(rows[sl], minlength=6)[touched])
    np.testing.assert_allclose(both.sums, one.sums, atol=1e-5)
    np.testing.assert_array_equal(both.counts, one.counts)  # every row was young: each had an event here


def test_scores_use_the_young_rows_factors_and_keep_every_bias():
    p = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    q = np.array([[1.0, 1.0], [5.0, 5.0], [2.0, 0.0]], np.float32)
    b = np.array([0.1, 0.2, 0.3], np.float32)
    young = (np.array([1]), np.array([[0.0, 3.0]], np.float32))
    np.testing.assert_allclose(score_users(p, q, b, young=young), [[1.1, 0.2, 2.3], [1.1, 3.2, 0.3]], rtol=1e-6)
    np.testing.assert_allclose(score_users(p, q, b), p @ q.T + b, rtol=1e-6)


def test_negative_settings_are_refused():
    with pytest.raises(ValueError):
        ConsumersConfig(young=-1)


def test_a_young_item_with_a_zero_sum_scores_with_what_it_learned():
    c = Consumers(ConsumersConfig(young=5), DIM)
    _established(c, [0, 1], events=5)
    c.shift(np.array([2]), np.zeros((1, DIM), np.float32), np.array([3]))  # counted, but no sum (an old record)
    c.learn_rows(np.array([3]), np.zeros((1, DIM), np.float32), np.ones(1, np.float32))  # a user vector of zeros
    c.learn_rows(np.array([4]), np.ones((1, DIM), np.float32), np.ones(1, np.float32))
    rows, _ = c.young_factors(np.ones((5, DIM), np.float32))
    assert rows.tolist() == [4]


def test_the_reference_length_does_not_depend_on_the_order_of_rows():
    rng = np.random.default_rng(1)
    factors = rng.normal(size=(600, DIM)).astype(np.float32) * rng.uniform(0.5, 3.0, size=(600, 1)).astype(np.float32)
    order = rng.permutation(600)
    out = []
    for perm in (np.arange(600), order):  # the same items, met in another order by another worker
        c = Consumers(ConsumersConfig(young=2, shrink=0.0), DIM)
        _established(c, list(range(599)), events=2)
        c.learn_rows(np.array([599]), np.ones((1, DIM), np.float32), np.ones(1, np.float32))
        where = np.argsort(perm)  # the row each item has on this worker
        c.counts[:600], c.sums[:600] = c.counts[:600][perm].copy(), c.sums[:600][perm].copy()
        rows, young = c.young_factors(factors[perm])
        out.append(np.linalg.norm(young[0]))
        assert rows.tolist() == [where[599]]
    assert out[0] == pytest.approx(out[1], rel=1e-6)


@given(arrays(np.float32, st.integers(1, 300), elements=st.floats(-1e6, 1e6, width=32)))
def test_the_reference_length_is_numpys_median_to_the_bit(values):
    from polyrec.consumers import _median

    ours, numpys = _median(values.copy()), np.median(values)
    assert ours.dtype == numpys.dtype and ours.tobytes() == numpys.tobytes()
