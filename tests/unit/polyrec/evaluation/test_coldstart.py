"""The cold-start protocol on a tiny synthetic stream whose item texts reveal the item's taste cluster."""

import numpy as np
import pytest

from polyrec.evaluation import coldstart
from polyrec.evaluation.coldstart import ColdStartMF, ItemTexts, KnownStartMF, ProjectionSettings
from polyrec.evaluation.protocol import ModelResult, Replay, run_prequential
from polyrec.mf import MFConfig

N_USERS, N_ITEMS, N_CLUSTERS = 60, 600, 4


def _stream(n: int = 12000, seed: int = 0) -> Replay:
    """Each user clicks items of one cluster; item i becomes available at a point proportional to i."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, N_USERS, n)
    available = np.maximum(1, (np.arange(n) + 1) * N_ITEMS // n)  # items 0..available-1 exist
    picks = rng.integers(0, N_ITEMS, n) % available
    # snap the pick to the user's cluster: cluster of item i is i % N_CLUSTERS
    item = picks - picks % N_CLUSTERS + user % N_CLUSTERS
    item = np.where(item < available, item, item - N_CLUSTERS).clip(0)
    users = np.array([f"u{u}" for u in user], dtype=object)
    items = np.array([f"i{i}" for i in item], dtype=object)
    return Replay(users, items, np.full(n, "click", dtype=object), np.ones(n, np.float32))


def _texts(informative: bool, seed: int = 1) -> ItemTexts:
    rng = np.random.default_rng(seed)
    cluster = np.arange(N_ITEMS) % N_CLUSTERS
    if not informative:
        cluster = rng.permutation(cluster)
    x = np.eye(8)[cluster] + 0.05 * rng.normal(size=(N_ITEMS, 8))
    ids = [f"i{i}" for i in range(N_ITEMS)]
    return ItemTexts(ids, x, ids, x)


def _recall(replay: Replay, texts: ItemTexts | None) -> float:
    new = coldstart.holdout_items(replay.items, 0.2, seed=0)
    model = ColdStartMF(MFConfig(dim=8), new, texts, ProjectionSettings(alpha=0.1, min_count=3, refit_every=200))
    result = run_prequential(replay, [model], batch_size=10, announce=0,
                             score_mask=coldstart.first_events(replay.items, new, 3))
    return result[0].summary()["recall@10"]


def test_an_informative_projection_beats_random_init_and_a_shuffled_one_does_not():
    replay = _stream()
    informative, random_init, shuffled = (_recall(replay, t) for t in (_texts(True), None, _texts(False)))
    assert informative > 2 * random_init
    assert informative > 2 * shuffled


def test_a_start_from_the_final_learned_vectors_bounds_what_a_start_can_buy():
    replay = _stream()
    new = coldstart.holdout_items(replay.items, 0.2, seed=0)
    learned = ColdStartMF(MFConfig(dim=8), new)
    run_prequential(replay, [learned], batch_size=10, announce=0, score_mask=np.zeros(len(replay), bool))
    ceilings = [KnownStartMF(MFConfig(dim=8), coldstart.final_vectors(learned.model, list(new), part), name=part)
                for part in ("both", "factors", "bias")]
    results = run_prequential(replay, [ColdStartMF(MFConfig(dim=8), new), *ceilings], batch_size=10,
                              announce=0, score_mask=coldstart.first_events(replay.items, new, 3))
    recall = {r.name: r.summary()["recall@10"] for r in results}
    assert recall["both"] > 2 * recall["random-init"] and recall["factors"] > 2 * recall["random-init"]
    # the starts are what the learned model held: factors and bias, factors with bias 0, random factors and bias
    item = str(new[0])
    row = learned.model.items.row(item)
    both, factors, bias = (coldstart.final_vectors(learned.model, [item], part)[item]
                           for part in ("both", "factors", "bias"))
    np.testing.assert_array_equal(both, np.r_[learned.model.item_factors[row], learned.model.item_bias[row]])
    assert factors[-1] == 0 and np.array_equal(factors[:-1], both[:-1]) and bias[-1] == both[-1]
    np.testing.assert_array_equal(bias[:-1], learned.model.initial_factors([item], salt=1)[0])
    with pytest.raises(ValueError, match="part must be both, factors or bias"):
        coldstart.final_vectors(learned.model, [item], "norm")
    with pytest.raises(KeyError, match="never-seen"):
        coldstart.final_vectors(learned.model, ["never-seen"])


def test_occurrence_and_first_events():
    items = np.array(["a", "b", "a", "c", "a", "b"], dtype=object)
    assert coldstart.occurrence(items).tolist() == [0, 0, 1, 0, 2, 1]
    assert coldstart.first_events(items, np.array(["a", "c"]), 2).tolist() == [True, False, True, True, False, False]


def test_holdout_is_seeded_and_sized():
    items = np.array([f"i{i}" for i in range(100)] * 3, dtype=object)
    a, b = coldstart.holdout_items(items, 0.2, seed=3), coldstart.holdout_items(items, 0.2, seed=3)
    assert len(a) == 20 and a.tolist() == b.tolist()
    assert coldstart.holdout_items(items, 0.2, seed=4).tolist() != a.tolist()


def test_new_items_start_from_the_projection_and_old_ones_from_random():
    texts = _texts(True)
    model = ColdStartMF(MFConfig(dim=8), ["i9"], texts, ProjectionSettings(min_count=1, refit_every=1))
    model.learn(["u0"] * 4, ["i0", "i1", "i2", "i3"], np.ones(4, np.float32))
    model.learn(["u1", "u1"], ["i8", "i9"], np.ones(2, np.float32))  # i8 old, i9 new
    assert model.projection is not None and model.projection.n_items == 4
    rows = model.model.items.rows(["i8", "i9"])
    start = model.model.initial_factors(["i8", "i9"], salt=1)
    assert not np.allclose(model.model.item_factors[rows[1]], start[1], atol=0.05)
    random_only = ColdStartMF(MFConfig(dim=8), ["i9"])
    random_only.scores(["u0"], ["i9"])  # announced, not learned yet
    np.testing.assert_allclose(random_only.model.item_factors[0], start[1])


def test_overlap_and_retrieval():
    rng = np.random.default_rng(0)
    users, a = rng.normal(size=(20, 4)), rng.normal(size=(30, 5))
    assert coldstart.overlap_at_k(users, a, a, k=10).tolist() == [1.0] * 20
    assert coldstart.overlap_at_k(users, a, -a, k=10).mean() < 0.5
    assert coldstart.overlap_at_k(users, a[:4], -a[:4], k=10).tolist() == [1.0] * 20  # fewer items than k: all of them
    x = np.eye(5)
    assert coldstart.top1_hits(x, x).all()
    assert coldstart.top1_hits(x, x[::-1]).tolist() == [False, False, True, False, False]


def test_recall_by_occurrence():
    hits = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    occ = np.array([0, 0, 3, 7, 19])
    assert coldstart.recall_by_occurrence(hits, occ) == {"1": 0.5, "2-5": 1.0, "6-20": 0.5}


def test_the_cold_start_summary_leaves_the_warm_up_to_the_whole_stream_numbers():
    """20 events, the first 2 the warm-up: new item "a"'s first two events (positions 0, 5; the
    view at 1 is not scored) and "b"'s (12, 15); only the warm-up's event is left out of the headline."""
    items = np.array(["a", "v", "x", "x", "x", "a", *["x"] * 6, "b", "x", "x", "b", *["x"] * 4], dtype=object)
    kinds = np.full(20, "click", dtype=object)
    kinds[1] = "view"
    replay = Replay(np.array(["u"] * 20, dtype=object), items, kinds, np.ones(20, np.float32))
    result = ModelResult("m", hits=[np.array([1.0, 0.0]), np.array([1.0, 1.0])],
                         ndcg=[np.array([1.0, 0.0]), np.array([0.5, 0.5])])
    summary = coldstart.cold_start_summaries([result], replay, np.array(["a", "b"]), n_first=2)["m"]
    assert coldstart.warmup_events(20) == 2
    assert (summary["recall@10"], summary["ndcg@10"], summary["scored_events"]) == (2 / 3, 1 / 3, 3)
    assert summary["recall@10_by_event"]["1"] == 1.0 and summary["recall@10_by_event"]["2-5"] == 0.5
    whole = summary["whole_stream"]
    assert (whole["recall@10"], whole["scored_events"], whole["recall@10_by_event"]["1"]) == (0.75, 4, 1.0)
    with pytest.raises(ValueError, match="not the 4 new items' first events"):
        coldstart.cold_start_summaries([ModelResult("short", hits=[np.ones(3)])], replay, np.array(["a", "b"]), 2)
