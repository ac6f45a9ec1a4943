"""The prequential protocol, with toy models whose recall is known in advance."""

import numpy as np
import pytest

from polyrec.evaluation.baselines import Polyrec, Popularity
from polyrec.evaluation.protocol import Replay, run_prequential


class Oracle:
    """Knows the replay: ranks first every item the user touches in the coming batch."""

    name = "oracle"

    def __init__(self, replay: Replay, batch: int) -> None:
        self.replay, self.batch, self.pos = replay, batch, 0

    def scores(self, users, catalog):
        s = np.zeros((len(users), len(catalog)))
        cols = {item: n for n, item in enumerate(catalog)}
        end = self.pos + self.batch
        for row, user in enumerate(users):
            for u, i in zip(self.replay.users[self.pos:end], self.replay.items[self.pos:end]):
                if u == user and i in cols:
                    s[row, cols[i]] = 1.0
        return s

    def learn(self, users, items, weights):
        self.pos += len(users)


class SeenFirst:
    """Always ranks the user's first item on top: the protocol must mask it once seen."""

    name = "seen-first"

    def __init__(self) -> None:
        self.first: dict[str, str] = {}

    def scores(self, users, catalog):
        s = np.zeros((len(users), len(catalog)))
        for row, u in enumerate(users):
            if u in self.first:
                s[row, list(catalog).index(self.first[u])] = 1.0
        return s

    def learn(self, users, items, weights):
        for u, i in zip(users, items):
            self.first.setdefault(u, i)


def _replay(n_users=5, n_items=40, n=400, seed=0) -> Replay:
    rng = np.random.default_rng(seed)
    users = np.array([f"u{x}" for x in rng.integers(0, n_users, n)], dtype=object)
    items = np.array([f"i{x}" for x in rng.integers(0, n_items, n)], dtype=object)
    events = np.array(rng.choice(["view", "click", "purchase"], n), dtype=object)
    return Replay(users, items, events, np.ones(n, np.float32))


@pytest.mark.parametrize("batch", [1, 7])
def test_oracle_hits_every_scorable_event_whose_item_is_known_and_unseen(batch):
    r = _replay()
    res = run_prequential(r, [Oracle(r, batch)], batch_size=batch, warmup=100)[0]
    hits = np.concatenate(res.hits)
    scorable = [n for n in range(100, len(r)) if r.events[n] in ("click", "purchase")]
    assert len(hits) == len(scorable)
    # a miss is only possible when the item is new or the user already saw it (masked)
    seen: dict[str, set] = {}
    expected = []
    for n in range(len(r)):
        if n in scorable:
            catalog = {i for i in r.items[: n - (n % batch)]} if batch > 1 else set(r.items[:n])
            expected.append(r.items[n] in catalog and r.items[n] not in seen.get(r.users[n], set()))
        seen.setdefault(r.users[n], set()).add(r.items[n])
    assert hits.tolist() == [float(e) for e in expected]


def test_seen_items_are_masked_even_within_a_batch():
    users = np.array(["a", "b", "b", "a", "a", "a"], dtype=object)
    items = np.array(["x", "y", "z", "y", "z", "y"], dtype=object)
    r = Replay(users, items, np.array(["click"] * 6, dtype=object), np.ones(6, np.float32))
    res = run_prequential(r, [SeenFirst()], batch_size=3, warmup=0)[0]
    # batch 1: nothing known yet, all misses. Batch 2: "y" and "z" are unseen hits (3 items < k);
    # the last "y" was seen by an earlier event of the same batch: masked, never a hit.
    assert np.concatenate(res.hits).tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 0.0]


def test_sample_every_scores_the_same_subset_for_all_models():
    r = _replay(n=600)
    full = run_prequential(r, [Popularity()], batch_size=10, warmup=50)[0]
    half = run_prequential(r, [Popularity(), Polyrec()], batch_size=10, warmup=50, sample_every=2)
    n_full = len(np.concatenate(full.hits))
    assert [len(np.concatenate(h.hits)) for h in half] == [n_full // 2] * 2
    assert half[0].summary()["learn_events_per_s"] > 0


def test_popularity_restricted_to_some_items_ranks_the_others_last():
    pop = Popularity(only={"b", "c"})
    pop.learn(["u1", "u2", "u3", "u4"], ["a", "a", "a", "c"], np.ones(4))
    first = pop.scores(["u9"], ["a", "b", "c"])[0]
    assert list(np.argsort(-first, kind="stable")) == [2, 1, 0]  # c (1 event), b (none), then a, the most popular
    pop.learn(["u5", "u6"], ["d", "d"], np.ones(2))
    grown = pop.scores(["u9"], ["a", "b", "c", "d"])[0]  # the catalog grew: "d" is not one of them
    assert grown[3] < grown[1] and np.array_equal(grown[:3], first)
    everything = Popularity()
    everything.learn(["u1", "u2", "u3", "u4"], ["a", "a", "a", "c"], np.ones(4))
    assert np.array_equal(everything.scores(["u9"], ["a", "b", "c"])[0], [3, 0, 1])


class CatalogWatcher:
    """Records the catalog each scoring call sees."""

    name = "watcher"

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def scores(self, users, catalog):
        self.seen.append(list(catalog))
        return np.zeros((len(users), len(catalog)))

    def learn(self, users, items, weights):
        pass


@pytest.mark.parametrize("lead, expected", [(0, [["a"], ["a", "b"], ["a", "b", "c"]]),
                                            (5, [["a", "b"], ["a", "b", "c"], ["a", "b", "c"]]),
                                            (None, [[], ["a"], ["a", "b"]])])
def test_items_join_the_catalog_their_lead_before_their_first_event(lead, expected):
    items = np.array(["a"] * 5 + ["b"] * 5 + ["c"] * 5)
    replay = Replay(np.array(["u"] * 15), items, np.array(["click"] * 15), np.ones(15, np.float32))
    watcher = CatalogWatcher()
    run_prequential(replay, [watcher], batch_size=5, announce=lead)
    assert watcher.seen == [s for s in expected if s]  # no scoring call while the catalog is empty


def test_a_negative_announcement_lead_is_refused():
    replay = Replay(np.array(["u"]), np.array(["a"]), np.array(["click"]), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="announce"):
        run_prequential(replay, [CatalogWatcher()], announce=-1)
