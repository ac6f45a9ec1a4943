"""The co-occurrence memory against a loop written from its definition, and its blend."""

from collections import defaultdict

import numpy as np
import pytest

from polyrec.cooccurrence import Cooccurrence, CooccurrenceConfig
from polyrec.ids import IdIndex

CFG = CooccurrenceConfig(window=4, pair_decay=0.8, context=3, context_decay=0.7, alpha=0.5)


def stream(n: int, users: int = 6, items: int = 15, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    return [f"u{x}" for x in rng.integers(users, size=n)], [f"i{x}" for x in rng.integers(items, size=n)]


def reference_scores(users: list[str], items: list[str], who: list[str], c: CooccurrenceConfig) -> dict:
    """The definition, event by event: pairs with the previous ``window`` events, both ways."""
    pairs: dict = defaultdict(float)
    totals: dict = defaultdict(float)
    seqs: dict = defaultdict(list)
    for u, i in zip(users, items):
        for d, j in enumerate(reversed(seqs[u][-c.window:]), 1):
            if j != i:
                w = c.pair_decay ** (d - 1)
                pairs[i, j] += w
                pairs[j, i] += w
                totals[i] += w
                totals[j] += w
        seqs[u].append(i)
    out = {}
    for u in who:
        score: dict = defaultdict(float)
        for step, h in enumerate(reversed(seqs[u][-c.context:])):
            for (a, b), w in pairs.items():
                if a == h:
                    score[b] += c.context_decay ** step * w / (totals[h] ** c.alpha * totals[b] ** (1 - c.alpha))
        out[u] = score
    return out


@pytest.mark.parametrize("batch", [1, 5, 100])
def test_scores_match_the_definition_whatever_the_micro_batch(batch):
    users, items = stream(300)
    index = IdIndex()
    memory = Cooccurrence(CFG)
    for start in range(0, len(users), batch):
        memory.learn(users[start:start + batch], index.add_many(items[start:start + batch]))
    who = sorted(set(users))
    got = memory.scores(memory.recent(who), len(index))
    want = reference_scores(users, items, who, CFG)
    for n, u in enumerate(who):
        expected = np.array([want[u].get(i, 0.0) for i in index.ids])
        np.testing.assert_allclose(got[n], expected, rtol=1e-5, atol=1e-7)
    assert got.max() > 0


def test_recent_is_each_users_last_events_and_nothing_for_strangers():
    index = IdIndex()
    memory = Cooccurrence(CFG)
    memory.learn(["a", "b", "a", "a", "a"], index.add_many(["x", "y", "z", "x", "w"]))
    slots = memory.recent(["a", "b", "nobody"])
    as_items = [[index.ids[memory.slot_items[s]] if s > 0 else None for s in row] for row in slots.tolist()]
    assert as_items == [["w", "x", "z"], ["y", None, None], [None, None, None]]


def test_items_past_max_items_get_no_row_and_score_zero():
    index = IdIndex()
    memory = Cooccurrence(CooccurrenceConfig(window=2, context=2, max_items=3))
    memory.learn(["u"] * 5, index.add_many(["a", "b", "c", "d", "e"]))
    assert memory.matrix.shape == (4, 4) and len(memory.slot_items) == 4  # slot 0: "none"
    scores = memory.scores(memory.recent(["u"]), len(index))[0]
    assert scores[3] == 0 and scores[4] == 0  # d and e: no slot
    memory.learn(["v", "v"], index.add_many(["d", "a"]))  # a pair with a slotless item adds nothing
    real = memory.matrix[1:, 1:]
    assert np.isfinite(real).all() and memory.totals[1:] == pytest.approx(real.sum(axis=1))


def test_the_blend_falls_back_to_the_factors_without_context_and_follows_the_memory_with_it():
    index = IdIndex()
    memory = Cooccurrence(CooccurrenceConfig(window=1, context=1, mf_weight=0.3))
    memory.learn(["a", "a", "b", "b"], index.add_many(["x", "y", "x", "z"]))  # x pairs with y and z
    mf = np.array([[0.0, 1.0, 2.0, 3.0]])  # x y z, then an item the memory never saw
    index.add_many(["q"])
    alone = memory.blend(mf, memory.recent(["stranger"]))
    assert np.argsort(-alone[0]).tolist() == [3, 2, 1, 0]  # the factors' order
    memory.learn(["c"], index.rows(["x"]))
    after_x = memory.blend(mf, memory.recent(["c"]))[0]
    assert set(np.argsort(-after_x)[:2].tolist()) == {1, 2}  # x's partners first, whatever the factors say


def test_a_shared_user_index_gives_the_same_memory():
    users, items = stream(200, seed=3)
    index, shared_users = IdIndex(), IdIndex()
    own, shared = Cooccurrence(CFG), Cooccurrence(CFG, users=shared_users)
    for start in range(0, 200, 10):
        rows = index.add_many(items[start:start + 10])
        own.learn(users[start:start + 10], rows)
        shared.learn_rows(shared_users.add_many(users[start:start + 10]), rows)
    who = sorted(set(users))
    np.testing.assert_array_equal(own.recent(who), shared.recent_rows(shared_users.rows(who)))
    np.testing.assert_array_equal(own.matrix, shared.matrix)


def test_bad_settings_are_refused():
    for bad in (dict(window=0), dict(context=0), dict(pair_decay=0.0), dict(context_decay=1.5), dict(floor=0.0),
                dict(mf_weight=-1.0), dict(max_items=0)):
        with pytest.raises(ValueError):
            CooccurrenceConfig(**bad)


def test_a_forgotten_user_has_no_context_and_starts_afresh_when_they_come_back():
    items = IdIndex(["a", "b", "c"])
    memory = Cooccurrence(CooccurrenceConfig(window=2, context=2))
    memory.learn(["u", "u", "v"], items.rows(["a", "b", "a"]))
    pairs = memory.matrix.copy()
    memory.forget(["u", "nobody"])
    assert memory.recent(["u", "v"]).tolist() == [[0, 0], [1, 0]]
    np.testing.assert_array_equal(memory.matrix, pairs)  # the pairs are sums over every user: they stay
    memory.learn(["u"], items.rows(["c"]))  # back: c is not paired with their a and b of before
    assert memory.recent(["u"]).tolist() == [[3, 0]]
    np.testing.assert_array_equal(memory.matrix[:3, :3], pairs[:3, :3])
