"""Every model of ``polyrec eval`` under one contract, and what each peer claims to do."""

import numpy as np
import pytest

from polyrec.consumers import ConsumersConfig
from polyrec.cooccurrence import CooccurrenceConfig
from polyrec.evaluation.baselines import ImplicitALS, ItemKNN, Polyrec, Popularity
from polyrec.evaluation.confidence import paired_difference, user_bootstrap
from polyrec.evaluation.protocol import Replay, run_prequential
from polyrec.mf import MFConfig


def replay(n: int = 400, users: int = 12, items: int = 30, seed: int = 0) -> Replay:
    rng = np.random.default_rng(seed)
    u = np.array([f"u{x}" for x in rng.integers(users, size=n)], dtype=object)
    i = np.array([f"i{x}" for x in rng.integers(items, size=n)], dtype=object)
    return Replay(u, i, np.array(["click"] * n, dtype=object), rng.integers(1, 4, size=n).astype(np.float32))


MODELS = {
    "popularity": lambda: Popularity(),
    "popularity-recent": lambda: Popularity(window=50),
    "item-knn": lambda: ItemKNN(),
    "item-knn-recent": lambda: ItemKNN(recent=3, neighbours=5, shrink=1.0),
    "als-foldin": lambda: ImplicitALS(factors=4, iterations=3, retrain_every=100),
    "als-foldin-trained-users": lambda: ImplicitALS(factors=4, iterations=3, retrain_every=100, fold_in="trained"),
    "polyrec": lambda: Polyrec(MFConfig(dim=4), CooccurrenceConfig(window=3, context=2), ConsumersConfig(young=3)),
    "polyrec-factors-only": lambda: Polyrec(MFConfig(dim=4), name="polyrec-factors-only"),
}


@pytest.mark.parametrize("make", MODELS.values(), ids=MODELS.keys())
def test_every_model_scores_the_catalog_for_any_user_and_learns_batches(make):
    model, r = make(), replay()
    for start in range(0, len(r), 37):  # uneven batches
        sl = slice(start, start + 37)
        model.learn(list(r.users[sl]), list(r.items[sl]), r.weights[sl])
    catalog = sorted(set(r.items))
    s = np.asarray(model.scores(["u1", "u2", "a-stranger"], catalog))
    assert s.shape == (3, len(catalog)) and np.isfinite(s).all()
    (result,) = run_prequential(r, [make()], batch_size=10, warmup=100)
    assert 0 <= result.summary()["recall@10"] <= 1 and result.summary()["scored_events"] == 300


def brute_force_knn(r: Replay, user: str, catalog: list[str], recent: int | None) -> np.ndarray:
    """Cosine of the columns of the user x item weight matrix, summed over the user's items."""
    users, items = sorted(set(r.users)), sorted(set(r.items))
    m = np.zeros((len(users), len(items)))
    for u, i, w in zip(r.users, r.items, r.weights):
        m[users.index(u), items.index(i)] += w
    norm = np.linalg.norm(m, axis=0)
    sim = (m.T @ m) / np.outer(norm, norm)
    np.fill_diagonal(sim, 0.0)  # a user's own item: seen, never recommended
    order = list(dict.fromkeys(i for u, i in zip(r.users[::-1], r.items[::-1]) if u == user))[::-1]
    mine = order[-recent:] if recent else order
    row = m[users.index(user)]
    score = sum(row[items.index(i)] * sim[items.index(i)] for i in mine)
    return np.array([score[items.index(c)] for c in catalog])


@pytest.mark.parametrize("recent", [None, 4])
def test_item_knn_is_cosine_on_weighted_cooccurrence(recent):
    r = replay(300, seed=4)
    model = ItemKNN(recent=recent)
    model.learn(list(r.users), list(r.items), r.weights)
    catalog = sorted(set(r.items))
    got = model.scores(["u3"], catalog)[0]
    want = brute_force_knn(r, "u3", catalog, recent)
    seen = {i for u, i in zip(r.users, r.items) if u == "u3"}
    unseen = [n for n, c in enumerate(catalog) if c not in seen]  # the protocol masks the seen ones
    np.testing.assert_allclose(got[unseen], want[unseen], rtol=1e-5)


def test_als_foldin_serves_users_who_arrived_after_the_last_retrain():
    r = replay(300, seed=5)
    late = Replay(np.array(["late"] * 5, dtype=object), r.items[:5], r.events[:5], r.weights[:5])
    catalog = sorted(set(r.items))
    scores = {}
    for fold_in in ("all", "trained"):
        model = ImplicitALS(factors=4, iterations=3, retrain_every=300, fold_in=fold_in)
        model.learn(list(r.users), list(r.items), r.weights)  # one retrain, at the end
        model.learn(list(late.users), list(late.items), late.weights)  # after it: unknown to it
        scores[fold_in] = model.scores(["late"], catalog)[0]
    popularity = Popularity()
    popularity.learn(list(r.users) + list(late.users), list(r.items) + list(late.items), r.weights)
    np.testing.assert_array_equal(scores["trained"], popularity.scores(["late"], catalog)[0])
    assert not np.array_equal(np.argsort(scores["all"]), np.argsort(scores["trained"]))


def test_the_bootstrap_over_users_covers_the_mean_and_pairs_the_difference():
    rng = np.random.default_rng(0)
    users = rng.integers(200, size=5000)
    base = rng.random(5000) < 0.2
    better = base | (rng.random(5000) < 0.05)  # the same events, a few more hits
    ci = user_bootstrap({"base": base.astype(float)}, users, resamples=500)["base"]
    assert ci["low"] < base.mean() < ci["high"] and ci["high"] - ci["low"] < 0.05
    diff = paired_difference(better.astype(float), base.astype(float), users, resamples=500)
    assert 0 < diff["low"] < diff["mean"] < diff["high"]  # paired: far tighter than the two intervals
