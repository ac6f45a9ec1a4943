"""The worker's state engine: replays are harmless, partitions agree on item vectors."""

import numpy as np
import pytest

from polyrec.consumers import ConsumersConfig
from polyrec.explore import ExploreConfig
from polyrec.mf import MFConfig
from stream.state import WorkerModel
from stream.wire import TEXT_SOURCE, ItemRecord, UserState

CFG = MFConfig(dim=8, seed=3)


def _batch(n=40, users=6, items=25, start=0, seed=0):
    rng = np.random.default_rng(seed)
    u = [f"u{x}" for x in rng.integers(0, users, n)]
    i = [f"i{x}" for x in rng.integers(0, items, n)]
    return u, i, np.ones(n, np.float32), np.arange(start, start + n), np.arange(n, dtype=float) * 1000.0


def _worker():
    w = WorkerModel(CFG, history_max=50, k=5)
    w.mf.add_items([f"i{x}" for x in range(25)])  # a shared catalog so negatives match
    return w


def test_exact_replay_changes_nothing():
    w = _worker()
    u, i, wt, off, ts = _batch()
    first = w.process(0, u, i, wt, off, ts, {})
    assert w.take_item_records()
    items_after = w.mf.item_factors.copy()
    again = w.process(0, u, i, wt, off, ts, dict(first.users))
    assert again.duplicates == len(u) and again.applied_user == 0 and again.applied_item == 0
    assert again.users == {} and w.take_item_records() == []
    np.testing.assert_array_equal(w.mf.item_factors, items_after)
    for user, st in first.users.items():
        np.testing.assert_array_equal(w.user_state(user, st.offset, 0).factors, st.factors)


def test_replay_after_lost_user_writes_applies_only_the_user_side():
    a = _worker()
    u, i, wt, off, ts = _batch()
    a.process(0, u, i, wt, off, ts, {})
    # a new owner of partition 0 saw the item records (durable) but none of the user records
    b = _worker()
    for rec in a.take_item_records():
        b.apply_item_record(rec)
    np.testing.assert_allclose(b.mf.item_factors, a.mf.item_factors, atol=1e-6)
    again = b.process(0, u, i, wt, off, ts, {})
    assert again.applied_user == len(u) and again.applied_item == 0
    np.testing.assert_allclose(b.mf.item_factors, a.mf.item_factors, atol=1e-6)  # not applied twice
    assert set(again.users) == set(u)
    assert {st.offset for st in again.users.values()} <= set(off.tolist())


def test_partial_batch_resumes_where_each_piece_stopped():
    a = _worker()
    u, i, wt, off, ts = _batch(n=60)
    a.process(0, u[:30], i[:30], wt[:30], off[:30], ts[:30], {})
    # replay from the start: the first 30 are duplicates for users and items alike
    last = {x: int(max(o for y, o in zip(u[:30], off[:30]) if y == x)) for x in set(u[:30])}
    res = a.process(0, u, i, wt, off, ts, {x: a.user_state(x, o, 0) for x, o in last.items()})
    assert res.duplicates == 30 and res.applied_user == 30 and res.applied_item == 30


def test_two_partitions_on_two_workers_see_the_same_item_vectors():
    a, b = _worker(), _worker()
    a.process(0, *_batch_states(_batch(seed=1, start=0)))
    b.process(1, *_batch_states(_batch(seed=2, start=0)))
    ra, rb = a.take_item_records(), b.take_item_records()
    for rec in rb:
        a.apply_item_record(rec)
    for rec in ra:
        b.apply_item_record(rec)
    # echoes of a worker's own records are ignored
    for rec in ra:
        assert a.apply_item_record(rec) is False
    np.testing.assert_allclose(a.mf.item_factors, b.mf.item_factors, atol=1e-6)
    np.testing.assert_allclose(a.mf.item_bias, b.mf.item_bias, atol=1e-6)
    # event counts per item add up across partitions, the same on both workers
    expected = np.bincount(a.mf.items.rows(_batch(seed=1)[1] + _batch(seed=2)[1]), minlength=len(a.mf.items))
    np.testing.assert_array_equal(a.item_counts(), expected)
    np.testing.assert_array_equal(b.item_counts()[b.mf.items.rows(a.mf.items.ids)], expected)
    # and an item learned only in partition 1 moved on worker a too
    only_b = {r.item_id for r in rb} - {r.item_id for r in ra}
    fresh = _worker()
    for item in only_b:
        assert not np.allclose(a.item_vector(item), fresh.item_vector(item))


def _batch_states(batch):
    u, i, wt, off, ts = batch
    return u, i, wt, off, ts, {}


def test_text_base_replaces_the_random_start_and_keeps_learned_contributions():
    w = _worker()
    w.process(0, *_batch_states(_batch()))
    item = w.take_item_records()[0].item_id
    learned = w.item_vector(item) - _worker().item_vector(item)
    text = np.linspace(-1, 1, CFG.dim + 1).astype(np.float32)
    w.apply_item_record(ItemRecord(item, TEXT_SOURCE, text, 0, embedding=np.ones(4, np.float32)))
    np.testing.assert_allclose(w.item_vector(item), text + learned, atol=1e-6)
    assert item in w.embeddings


def test_an_item_with_no_event_keeps_its_text_start_while_other_items_learn():
    w = _worker()
    text = np.linspace(-1, 1, CFG.dim + 1).astype(np.float32)
    w.apply_item_record(ItemRecord("new", TEXT_SOURCE, text, 0, embedding=np.ones(4, np.float32)))
    for n in range(20):  # 800 events of the 25 catalogue items: the new item is never a negative
        w.process(0, *_batch_states(_batch(start=40 * n, seed=n)))
    np.testing.assert_array_equal(w.item_vector("new"), text)
    w.process(0, ["u0"], ["new"], np.ones(1, np.float32), np.array([800]), np.zeros(1), {})
    assert not np.array_equal(w.item_vector("new"), text)  # its first event: it learns, as every item


def test_a_later_text_of_an_item_wins_whatever_order_its_records_arrive_in():
    """The item re-published: its worker applies texts 1 and 2, then the replica echoes text 1."""
    w = _worker()
    v1, v2 = (np.full(CFG.dim + 1, x, np.float32) for x in (0.5, -0.25))
    assert w.apply_item_record(ItemRecord("i1", TEXT_SOURCE, v1, 10))
    assert w.apply_item_record(ItemRecord("i1", TEXT_SOURCE, v2, 11))
    assert w.knows(TEXT_SOURCE, 10, "i1") and w.knows(TEXT_SOURCE, 11, "i1")  # the echoes
    assert not w.apply_item_record(ItemRecord("i1", TEXT_SOURCE, v1, 10))  # stale: not applied
    only_v2 = _worker()
    only_v2.apply_item_record(ItemRecord("i1", TEXT_SOURCE, v2, 11))
    np.testing.assert_allclose(w.item_vector("i1"), only_v2.item_vector("i1"), atol=1e-6)
    assert not w.knows(TEXT_SOURCE, 12, "i1") and not w.knows(TEXT_SOURCE, 0, "never-seen")


def test_recommendations_cover_every_user_of_the_batch_and_skip_seen_items():
    w = _worker()
    u, i, wt, off, ts = _batch()
    res = w.process(0, u, i, wt, off, ts, {})
    recs = res.recs.run()
    assert {r[0] for r in recs} == set(u)
    for user, items, scores, latest in recs:
        seen = {b for a, b in zip(u, i) if a == user}
        assert not seen & set(items) and len(items) == 5
        assert scores == sorted(scores, reverse=True)
        assert latest == max(t for a, t in zip(u, ts) if a == user)


def test_a_top_k_job_gives_its_capture_time_answer_whatever_the_model_does_meanwhile():
    """The job runs off the event loop while the loop goes on with the model (docs: RecsJob)."""
    w = _worker()
    job = w.process(0, *_batch(), {}).recs
    expected = job.run()
    w.mf.add_items([f"new{x}" for x in range(1000)])  # past the arrays' capacity: reallocated
    w.forget_users()  # a rebalance
    w.process(1, *_batch(seed=5), {})  # another partition learns (in the new arrays)
    w.apply_item_record(ItemRecord("i1", TEXT_SOURCE, np.full(CFG.dim + 1, 9.0, np.float32), 0))
    assert job.run() == expected


def test_records_round_trip_through_json():
    st = UserState(np.arange(8, dtype=np.float32), 1.5, ["a", "b"], 41, 3)
    back = UserState.from_json(st.to_json())
    np.testing.assert_array_equal(back.factors, st.factors)
    assert (back.accum, back.history, back.offset, back.partition) == (1.5, ["a", "b"], 41, 3)
    older = {k: v for k, v in st.to_json().items() if k != "p"}  # written before states named their partition
    assert UserState.from_json(older).partition is None
    rec = ItemRecord("x/y", "p3", np.ones(9, np.float32), 7, np.zeros(3, np.float32))
    back_rec = ItemRecord.from_json(rec.to_json())
    assert back_rec.key == "p3/x/y" and back_rec.offset == 7
    np.testing.assert_array_equal(back_rec.embedding, rec.embedding)
    with pytest.raises(ValueError, match="dimension"):
        _worker().apply_item_record(ItemRecord("i1", "p0", np.ones(3, np.float32), 1))


def test_replay_after_lost_item_writes_applies_only_the_item_side():
    a = _worker()
    u, i, wt, off, ts = _batch()
    res = a.process(0, u, i, wt, off, ts, {})
    # a new owner got every user record but none of the item records
    b = _worker()
    again = b.process(0, u, i, wt, off, ts, dict(res.users))
    assert again.applied_user == 0 and again.applied_item == len(u)
    assert again.users == {}  # user states were already complete
    for user, st in res.users.items():
        np.testing.assert_array_equal(b.user_state(user, st.offset, 0).factors, st.factors)
    assert {r.item_id for r in b.take_item_records()} >= set(i)


def test_knows_spots_echoes_of_records_already_applied():
    w = _worker()
    u, i, wt, off, ts = _batch(n=10, start=100)
    w.process(0, u, i, wt, off, ts, {})
    rec = w.take_item_records()[0]
    assert w.knows("p0", rec.offset, rec.item_id)  # our own record coming back
    assert not w.knows("p0", rec.offset + 1, rec.item_id)  # a newer one (a later owner of p0)
    assert not w.knows("p1", 1, rec.item_id)  # another partition's contribution
    assert not w.knows(TEXT_SOURCE, 0, rec.item_id)  # no text for it yet
    assert not w.knows("p0", 0, "never-seen")


def test_a_late_record_of_an_evicted_owner_makes_the_new_owner_write_its_newer_one_again():
    evicted, owner = _worker(), _worker()
    first = _batch(n=40, start=0, seed=1)
    evicted.process(0, *first, {})  # learned, not yet flushed when it lost the partition
    owner.process(0, *first, {})  # the new owner replays from the last commit...
    owner.process(0, *_batch(n=40, start=40, seed=2), {})  # ...and goes on
    written = {r.item_id: r for r in owner.take_item_records()}
    late = evicted.take_item_records()  # the evicted owner's flush lands after the new owner's
    for rec in late:
        assert owner.knows("p0", rec.offset, rec.item_id, rec.writer)  # older: not applied
    again = {r.item_id: r for r in owner.take_item_records()}
    stale = {r.item_id for r in late if r.offset < written[r.item_id].offset}
    assert stale and set(again) == stale  # rewritten, so they land after the late ones
    assert all(again[i].offset == written[i].offset for i in stale)
    for rec in written.values():  # the owner's own echoes never trigger a rewrite
        assert owner.knows("p0", rec.offset, rec.item_id, rec.writer)
    assert owner.take_item_records() == []
    assert dict(written[next(iter(written))].headers())["w"] == owner.writer.encode()


def _run(w, table, batches, forget_each_time):
    """Feed batches through ``w`` with ``table`` as the users table, as the pipeline does."""
    out = []
    for u, i, wt, off, ts in batches:
        if forget_each_time:
            w.forget_users()
        res = w.process(0, u, i, wt, off, ts, {x: table.get(x) for x in set(u)})
        table.update(res.users)
        out.append((res.recs.run(), w.take_item_records()))  # top-K as the pipeline runs it: at once
    return out


def test_skipping_the_reload_of_unchanged_users_changes_no_result():
    batches = [_batch(start=40 * n, seed=n) for n in range(6)]
    cached, table_c = _worker(), {}
    reloaded, table_r = _worker(), {}
    for (a, items_a), (b, items_b) in zip(_run(cached, table_c, batches, False),
                                          _run(reloaded, table_r, batches, True)):
        assert [r.vector.tolist() for r in items_a] == [r.vector.tolist() for r in items_b]
        assert a == b
    for user in table_c:
        np.testing.assert_array_equal(table_c[user].factors, table_r[user].factors)
        assert table_c[user].history == table_r[user].history


def test_a_state_from_the_table_replaces_the_row_when_its_offset_differs_or_after_a_hand_over():
    w = _worker()
    u, i, wt, off, ts = _batch()
    first = w.process(0, u, i, wt, off, ts, {})
    user, st = next(iter(first.users.items()))
    other = UserState(np.full(CFG.dim, 0.5, np.float32), st.accum, ["i1"], st.offset, 0)
    # same offset as the row's own state: the row is trusted while this worker owns the partition
    w.process(0, [user], ["i2"], np.ones(1, np.float32), np.array([st.offset]), np.zeros(1), {user: other})
    assert w.user_state(user, st.offset, 0).history != ["i1"]
    # after partitions moved, the table wins even at the same offset (another owner replayed it)
    w.forget_users()
    w.process(0, [user], ["i2"], np.ones(1, np.float32), np.array([st.offset]), np.zeros(1), {user: other})
    np.testing.assert_array_equal(w.user_state(user, st.offset, 0).factors, other.factors)
    assert w.user_state(user, st.offset, 0).history == ["i1"]
    # a different offset always reloads
    newer = UserState(np.full(CFG.dim, -0.5, np.float32), st.accum, ["i3"], st.offset + 1000, 0)
    w.process(0, [user], ["i2"], np.ones(1, np.float32), np.array([st.offset + 1000]), np.zeros(1), {user: newer})
    np.testing.assert_array_equal(w.user_state(user, newer.offset, 0).factors, newer.factors)


def test_forgetting_users_frees_their_rows_and_the_table_brings_them_back():
    w, table = _worker(), {}
    u, i, wt, off, ts = _batch()
    table.update(w.process(0, u, i, wt, off, ts, {}).users)
    before = {x: w.user_state(x, table[x].offset, 0) for x in table}
    w.forget_users()
    assert len(w.mf.users) == 0 and w.history.get(0) == []  # the rows are gone, not only the offsets
    again = w.process(0, u, i, wt, off, ts, {x: table.get(x) for x in set(u)})
    assert again.duplicates == len(u)  # a replay after the hand-over: nothing re-applied
    for x, st in before.items():
        np.testing.assert_array_equal(w.user_state(x, st.offset, 0).factors, st.factors)
        assert w.user_state(x, st.offset, 0).history == st.history


def test_item_contributions_are_coalesced_until_taken():
    w = _worker()
    b1, b2 = _batch(n=30, seed=1, start=0), _batch(n=30, seed=2, start=30)
    w.process(0, *_batch_states(b1))
    w.process(0, *_batch_states(b2))
    records = w.take_item_records()
    assert len(records) == len({r.item_id for r in records})  # one record per item
    assert set(b1[1]) | set(b2[1]) <= {r.item_id for r in records}
    # each carries its whole contribution: applied on a fresh worker, the item vectors agree
    fresh = _worker()
    for rec in records:
        fresh.apply_item_record(rec)
    np.testing.assert_allclose(fresh.mf.item_factors, w.mf.item_factors, atol=1e-6)
    # and the offset of the last batch that touched the item (as a positive or a sampled negative)
    for rec in records:
        assert rec.offset in (29, 59)
        if rec.item_id in b2[1]:
            assert rec.offset == 59
    assert w.take_item_records() == []
    w.keep_unsent(records[:3])  # a failed write puts them back
    assert [r.item_id for r in w.take_item_records()] == [r.item_id for r in records[:3]]


def test_take_item_records_by_partition():
    w = _worker()
    w.process(0, *_batch_states(_batch(seed=1)))
    w.process(1, *_batch_states(_batch(seed=2)))
    assert {r.source for r in w.take_item_records([1])} == {"p1"}
    assert {r.source for r in w.take_item_records()} == {"p0"}


def test_events_of_a_user_whose_state_came_from_another_partition_are_all_learned():
    # two producers that partition differently put one user on partitions 3 and 0: their offsets
    # are not comparable, so a state at offset 5,000 of partition 3 must not make partition 0's
    # earlier offsets look like replays
    w = _worker()
    elsewhere = w.process(3, ["u1"], ["i1"], np.ones(1, np.float32), np.array([5000]), np.zeros(1), {})
    other = _worker()
    res = other.process(0, ["u1", "u1"], ["i2", "i3"], np.ones(2, np.float32), np.array([900, 901]), np.zeros(2),
                        dict(elsewhere.users))
    assert res.applied_user == 2 and res.duplicates == 0 and res.moved == ["u1"]
    assert res.users["u1"].partition == 0 and res.users["u1"].offset == 901
    assert set(res.users["u1"].history) == {"i1", "i2", "i3"}
    # back on its own partition, replays are recognised again
    again = other.process(0, ["u1"], ["i3"], np.ones(1, np.float32), np.array([901]), np.zeros(1), dict(res.users))
    assert again.duplicates == 1 and again.moved == []


def test_a_state_of_another_dimension_keeps_its_history_and_offset_and_restarts_its_factors():
    big = WorkerModel(MFConfig(dim=CFG.dim * 2, seed=0), history_max=50, k=5)
    st = big.process(0, ["u1"], ["i1"], np.ones(1, np.float32), np.array([7]), np.zeros(1), {}).users["u1"]
    w = _worker()
    replay = w.process(0, ["u1"], ["i1"], np.ones(1, np.float32), np.array([7]), np.zeros(1), {"u1": st})
    assert replay.resized == ["u1"] and replay.applied_user == 0  # the offset still counts
    res = w.process(0, ["u1"], ["i2"], np.ones(1, np.float32), np.array([8]), np.zeros(1), {"u1": st})
    assert res.applied_user == 1 and res.users["u1"].factors.shape == (CFG.dim,)
    assert set(res.users["u1"].history) == {"i1", "i2"}


@pytest.mark.parametrize("factor, accum", [(np.nan, 1.0), (np.inf, 1.0), (3e37, 1.0), (0.1, np.nan), (0.1, -1.0)])
def test_a_corrupt_stored_state_restarts_its_factors_and_poisons_nothing(factor, accum):
    # a NaN state used to turn its item and every pooled negative NaN, and the next users who touched
    # them got empty recommendations (shared/notes/reliability-audit.md, hole 5)
    bad = UserState(np.full(CFG.dim, factor, np.float32), accum, ["i1"], 7, 0)
    w = _worker()
    res = w.process(0, ["u1"], ["i2"], np.ones(1, np.float32), np.array([8]), np.zeros(1), {"u1": bad})
    assert res.invalid == ["u1"] and res.applied_user == 1
    assert np.isfinite(res.users["u1"].factors).all() and np.isfinite(res.users["u1"].accum)
    assert set(res.users["u1"].history) == {"i1", "i2"}  # the history and the offset are kept
    assert np.isfinite(w.mf.item_factors).all() and np.isfinite(w.mf.item_bias).all()
    after = w.process(0, ["u2"], ["i2"], np.ones(1, np.float32), np.array([9]), np.zeros(1), {})
    assert len(after.recs.run()[0][1]) == 5  # the next user of the same item still gets recommendations


@pytest.mark.parametrize("value", [np.nan, 3e37, -2e3])
def test_an_item_record_with_an_unusable_number_is_refused(value):
    w = _worker()
    before = w.item_vector("i1")
    vector = np.zeros(CFG.dim + 1, np.float32)
    vector[2] = value
    with pytest.raises(ValueError, match="non-finite number or one beyond"):
        w.apply_item_record(ItemRecord("i1", "p0", vector, 5, count=1))
    np.testing.assert_array_equal(w.item_vector("i1"), before)


def test_young_items_consumers_reach_every_worker_and_stop_travelling_once_established():
    young = ConsumersConfig(young=4, shrink=1.0)
    a, b = (WorkerModel(CFG, young=young, history_max=50, k=5) for _ in range(2))
    for w in (a, b):
        w.mf.add_items([f"i{x}" for x in range(25)])
    a.process(0, *_batch_states(_batch(seed=1, start=0)))
    b.process(1, *_batch_states(_batch(seed=2, start=0)))
    ra, rb = a.take_item_records(), b.take_item_records()
    for rec in rb:
        a.apply_item_record(ItemRecord.from_json(rec.to_json()) if rec.consumers is not None else rec)
    for rec in ra:
        b.apply_item_record(rec)
    np.testing.assert_array_equal(a.consumers.counts[:25], a.item_counts()[:25])
    np.testing.assert_array_equal(b.consumers.counts[:25], a.item_counts()[:25])
    young_rows = np.flatnonzero(a.item_counts()[:25] < 4)  # the sums of established items no longer matter
    np.testing.assert_allclose(a.consumers.sums[young_rows], b.consumers.sums[young_rows], atol=1e-5)
    assert a.consumers.counts[:25].max() >= 4 and any(rec.consumers is None for rec in ra)  # some are established
    assert all((rec.consumers is None) == (rec.count >= 4) for rec in ra + rb)
    rows, factors = a.consumers.young_factors(a.mf.item_factors)
    rows_b, factors_b = b.consumers.young_factors(b.mf.item_factors)
    assert len(rows) and rows.tolist() == rows_b.tolist()
    np.testing.assert_allclose(factors, factors_b, atol=1e-5)
    np.testing.assert_array_equal(a.process(0, ["u0"], ["i0"], np.ones(1, np.float32), np.array([99]), np.zeros(1),
                                            {}).recs.young[0], a.consumers.young_factors(a.mf.item_factors)[0])


def test_an_item_record_with_consumers_of_another_dimension_is_refused():
    rec = ItemRecord("i1", "p0", np.zeros(CFG.dim + 1, np.float32), 5, count=1, consumers=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="consumers"):
        _worker().apply_item_record(rec)


def test_a_large_consumer_sum_is_accepted_only_its_direction_counts():
    w = _worker()
    big = np.full(CFG.dim, 5e3, np.float32)  # 19 events of weight 1000 can sum past any factor bound
    assert w.apply_item_record(ItemRecord("i1", "p0", np.zeros(CFG.dim + 1, np.float32), 5, count=1, consumers=big))
    np.testing.assert_array_equal(w.consumers.sums[w.mf.items.row("i1")], big)


def test_a_forgotten_user_leaves_no_row_and_comes_back_as_a_new_user():
    w = _worker()
    u, i, wt, off, ts = _batch()
    first = w.process(0, u, i, wt, off, ts, {})
    user = u[0]
    row = int(w.mf.users.row(user))
    assert w.forget_user(user) and not w.forget_user(user) and not w.forget_user("nobody")
    assert user not in w.mf.users and w.history.get(row) == []
    assert not w.mf.user_factors[row].any() and w.mf.user_accum[row] == 0
    # back with no stored state (the tombstone): a fresh user, whose first event is new and learned
    again = w.process(0, [user], ["i1"], np.ones(1, np.float32), np.array([100]), np.array([0.0]), {user: None})
    assert again.applied_user == 1 and again.users[user].history == ["i1"]
    assert first.users[user].history != ["i1"]


def test_recommendation_slots_count_by_language_and_age():
    from stream.wire import language_label

    assert [language_label(x) for x in ("de", "DE-at", "pt_BR", None, " ", "Deutsch!", "zh-Hant")] == \
        ["de", "de", "pt", "none", "none", "other", "zh"]
    w = WorkerModel(CFG, history_max=10, k=3)
    w.apply_item_record(ItemRecord("neu", TEXT_SOURCE, np.zeros(CFG.dim + 1, np.float32), 0, lang="de"))
    w.apply_item_record(ItemRecord("new", TEXT_SOURCE, np.zeros(CFG.dim + 1, np.float32), 1, lang="en"))
    many = w.young.young
    w.process(0, ["u"] * many, ["old"] * many, np.ones(many, np.float32), np.arange(many), np.zeros(many), {})
    w.process(0, ["v"], ["new"], np.ones(1, np.float32), np.array([0]), np.zeros(1), {})
    assert w.exposure(["neu", "new", "old", "old", "unknown-item"]) == {
        ("de", "new"): 1, ("en", "new"): 1, ("none", "established"): 2}
    assert w.new_items_by_language() == {"none": 0, "de": 1, "en": 1}
    # the labels travel on text records, normalised by the reader too
    rec = ItemRecord.from_json(ItemRecord("x", TEXT_SOURCE, np.zeros(3, np.float32), 0, lang="FR-ca").to_json())
    assert rec.lang == "fr"


def test_a_users_applied_count_counts_each_event_once_across_replays_and_reloads():
    w = _worker()
    u, i, wt, off, ts = _batch(n=40)
    first = w.process(0, u, i, wt, off, ts, {})
    per_user = {x: u.count(x) for x in set(u)}
    assert {x: st.applied for x, st in first.users.items()} == per_user
    again = w.process(0, u, i, wt, off, ts, dict(first.users))  # a replay: nothing new
    assert again.users == {}
    w.forget_users()  # a rebalance: reloaded from the stored states, then 40 more events
    u2, i2, wt2, off2, ts2 = _batch(n=40, start=40, seed=1)
    more = w.process(0, u2, i2, wt2, off2, ts2, dict(first.users))
    for x, st in more.users.items():
        assert st.applied == per_user.get(x, 0) + u2.count(x)
    assert UserState.from_json(more.users[u2[0]].to_json()).applied == more.users[u2[0]].applied


def test_scoring_with_fresh_items_about_records_the_users_fit_bars_and_forgetting_drops_one():
    w = WorkerModel(CFG, young=ConsumersConfig(young=1), explore=ExploreConfig(share=1.0), history_max=50, k=5)
    w.mf.add_items([f"i{x}" for x in range(30)])  # the batch has no event of i25 to i29: fresh
    u, i, wt, off, ts = _batch()
    job = w.process(0, u, i, wt, off, ts, {}).recs
    assert set(range(25, 30)) <= set(job.fresh.rows.tolist())  # and the few the batch missed
    assert not np.isfinite(w.fit_bars.values).any()  # recorded by the top-K job, off the event loop
    job.run()
    rows = w.mf.users.rows(job.users)
    assert np.isfinite(w.fit_bars.values[rows]).all()
    assert w.forget_user(job.users[0]) and np.isnan(w.fit_bars.values[rows[0]])  # erased with the user
