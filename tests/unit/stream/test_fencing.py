"""stream.fencing: a changelog replay keeps each user's newest state, whatever order records landed in."""

import asyncio
import json
from types import SimpleNamespace

from stream import metrics
from stream.fencing import (
    LateStateWatch,
    UserStatesFence,
    erasure_header,
    erasure_position,
    newest_states,
    writer_header,
)


def _keep(records, held=None):
    kept, late = newest_states(records, lambda r: r[0], lambda r: r[1], (held or {}).get)
    return [None if r[1] is None else r[1].get("o") for r in kept], late


def test_an_older_state_of_the_same_partition_is_left_out_equal_and_newer_ones_apply():
    assert _keep([("u", {"p": 1, "o": 5}), ("u", {"p": 1, "o": 5}), ("u", {"p": 1, "o": 4}),
                  ("u", {"p": 1, "o": 8})]) == ([5, 5, 8], 1)


def test_a_state_older_than_the_held_one_is_left_out_but_not_counted_late():
    assert _keep([("u", {"p": 1, "o": 5})], {"u": {"p": 1, "o": 6}}) == ([], 0)
    assert _keep([("u", {"p": 1, "o": 7})], {"u": {"p": 1, "o": 6}}) == ([7], 0)


def test_a_tombstone_without_an_erasure_header_always_applies_and_whatever_follows_it_too():
    assert _keep([("u", None), ("u", {"p": 1, "o": 2})], {"u": {"p": 1, "o": 6}}) == ([None, 2], 0)


def test_states_of_other_partitions_or_without_an_offset_are_not_compared():
    assert _keep([("u", {"p": 2, "o": 1}), ("u", {"p": 1, "o": 0}), ("u", {}), ("u", {"p": 1, "o": 0})],
                 {"u": {"p": 1, "o": 6}}) == ([1, 0, None, 0], 0)


def test_keys_are_fenced_apart():
    assert _keep([("u", {"p": 0, "o": 3}), ("v", {"p": 0, "o": 1}), ("u", {"p": 0, "o": 2})]) == ([3, 1], 1)


def _erasures(records, held=None, erasures=None):
    """(key, value, erasure position): what a replay keeps, how many late, whose last record is not
    their newest (to be written again by the owner)."""
    behind: dict = {}
    fenced = newest_states(records, lambda r: r[0], lambda r: r[1], (held or {}).get, lambda r: r[2],
                           {} if erasures is None else erasures, behind)
    return [None if r[1] is None else r[1]["o"] for r in fenced.kept], fenced.late, set(behind)


def test_a_state_learned_before_an_erasure_and_landing_after_its_tombstone_is_late():
    records = [("u", {"p": 1, "o": 5}, None), ("u", None, (1, 9)), ("u", {"p": 1, "o": 7}, None)]
    assert _erasures(records) == ([5, None], 1, {"u"})
    # the user's events after the request apply, and nothing is to be erased again
    assert _erasures(records + [("u", {"p": 1, "o": 12}, None)]) == ([5, None, 12], 1, set())
    # another partition's state is not comparable: it applies (as any state of another partition)
    assert _erasures([("u", None, (1, 9)), ("u", {"p": 2, "o": 3}, None)]) == ([None, 3], 0, set())


def test_the_erasure_is_remembered_across_replay_batches_and_forgotten_when_a_newer_state_applies():
    erasures: dict = {}
    assert _erasures([("u", None, (0, 40))], erasures=erasures) == ([None], 0, set())
    assert erasures == {"u": (0, 40)}
    assert _erasures([("u", {"p": 0, "o": 39}, None)], erasures=erasures) == ([], 1, {"u"})  # the next batch
    assert _erasures([("u", {"p": 0, "o": 41}, None)], erasures=erasures) == ([41], 0, set())
    assert erasures == {}


def test_an_erasure_older_than_the_state_held_is_left_out_and_behind_unless_a_newer_record_follows():
    assert _erasures([("u", None, (0, 4))], {"u": {"p": 0, "o": 6}}) == ([], 0, {"u"})
    assert _erasures([("u", None, (0, 4)), ("u", {"p": 0, "o": 6}, None)], {"u": {"p": 0, "o": 6}}) == ([6], 0, set())


def test_a_replay_over_a_store_that_kept_its_users_leaves_nothing_behind():
    """Every record older than the held state is left out, but the last one equals it: the topic's
    last record is the newest, nothing to write again."""
    records = [("u", {"p": 0, "o": 2}), ("u", {"p": 0, "o": 5}), ("u", {"p": 0, "o": 6})]
    behind: dict = {}
    kept, late = newest_states(records, lambda r: r[0], lambda r: r[1], {"u": {"p": 0, "o": 6}}.get, behind=behind)
    assert ([r[1]["o"] for r in kept], late, behind) == ([6], 0, {})


def test_a_late_record_in_a_later_replay_batch_leaves_its_user_behind_until_a_newer_one_lands():
    held: dict = {}
    behind: dict = {}

    def replay(records):
        kept = newest_states(records, lambda r: r[0], lambda r: r[1], held.get, behind=behind).kept
        held.update((k, v) for k, v in kept)

    replay([("u", {"p": 0, "o": 9})])
    replay([("u", {"p": 0, "o": 7})])  # the evicted owner's, in the next batch: left out, not counted
    assert held == {"u": {"p": 0, "o": 9}} and behind == {"u": (0, 7)}
    replay([("u", {"p": 0, "o": 9})])  # the owner wrote its newest again
    assert behind == {}


def test_the_erasure_header_round_trips_and_a_malformed_one_is_no_position():
    assert erasure_position([erasure_header(3, 1_234)]) == (3, 1_234)
    assert erasure_position({"polyrec-erased": b"3:7"}) == (3, 7)
    assert erasure_position([("polyrec-erased", b"x:7")]) is None
    assert erasure_position(None) is None and erasure_position([("other", b"1:2")]) is None
    assert erasure_position([("polyrec-erased", "3:7")]) == (3, 7)  # text, as a client library may hand it
    for bad in (None, 3.5, b"\xff:1", "3:7:9"):  # never an exception: the fence runs during recovery
        assert erasure_position([("polyrec-erased", bad)]) is None


def _event(key: str, value: dict | None, partition: int = 0, headers=None):
    return SimpleNamespace(message=SimpleNamespace(key=json.dumps(key).encode(), partition=partition,
                                                   value=None if value is None else json.dumps(value).encode(),
                                                   headers=headers or []))


def test_the_table_applies_only_the_newest_states_and_counts_the_rest():
    applied = []
    table = SimpleNamespace(data={"u": {"p": 0, "o": 9}}, apply_changelog_batch=applied.extend)
    UserStatesFence(table)
    before = metrics.LATE_USER_STATES._value.get()
    batch = [_event("u", {"p": 0, "o": 8}), _event("w", {"p": 0, "o": 1}), _event("u", {"p": 0, "o": 10}),
             _event("u", {"p": 0, "o": 9}), _event("u", None)]
    table.apply_changelog_batch(batch)  # o=8: older than the held state (a replay); o=9: after o=10 (late)
    assert applied == [batch[1], batch[2], batch[4]] and metrics.LATE_USER_STATES._value.get() - before == 1


def test_the_fence_hands_out_each_user_whose_last_record_is_late_once_per_partition():
    applied = []
    table = SimpleNamespace(data={"x": {"p": 1, "o": 8}}, apply_changelog_batch=applied.extend)
    fence = UserStatesFence(table)
    table.apply_changelog_batch([_event("u", None, 2, [erasure_header(2, 50)]), _event("v", {"p": 2, "o": 3}, 2)])
    table.apply_changelog_batch([_event("u", {"p": 2, "o": 48}, 2), _event("x", {"p": 1, "o": 4}, 1)])  # both late
    assert fence.erasures == {(2, "u"): (2, 50)}
    assert fence.take_late(3) == {}
    assert fence.take_late(2) == {"u": (2, 48)}
    assert fence.take_late(2) == {}
    assert fence.take_late(1) == {"x": (1, 4)}


def _record(user: str, value: dict | None, headers: list):
    return SimpleNamespace(key=json.dumps(user).encode(), value=None if value is None else json.dumps(value).encode(),
                           headers=headers)


def test_the_watch_hands_out_other_writers_records_only_with_their_positions():
    watch = LateStateWatch(["localhost:1"], "users-changelog", "me", on_late=None)
    records = [_record("a", {"p": 0, "o": 5}, [writer_header("me")]),  # this worker's own: skipped
               _record("b", {"p": 0, "o": 3}, [writer_header("evicted")]),
               _record("c", None, [erasure_header(0, 9), writer_header("evicted")]),
               _record("d", {"p": 0, "o": 4}, []),  # no header: written before it existed, or by hand
               _record("e", {"no": "offset"}, [writer_header("evicted")]),
               SimpleNamespace(key=b"{not json", value=b"{}", headers=[])]
    assert watch.late(records) == {"b": (0, 3), "c": (0, 9), "d": (0, 4), "e": None}


def test_the_watch_reads_a_partition_it_keeps_through_a_rebalance_on_from_where_it_was():
    """The evicted owner's late records land during the rebalance its return causes: a partition
    this worker keeps must be read on from before it, a new one from its end."""
    ends = {0: 40, 1: 70, 2: 90}

    async def end_offsets(tps):
        return {tp: ends[tp.partition] for tp in tps}

    async def main():
        watch = LateStateWatch(["localhost:1"], "users-changelog", "me", on_late=None)
        watch._consumer = SimpleNamespace(end_offsets=end_offsets)
        watch._started.set()
        await watch.take_over([0, 1])
        assert watch._owned == {0: 40, 1: 70}
        watch._owned[0] = 55  # read on
        watch.note(1, {"u": (1, 3)})
        watch.give_up([0, 1])
        ends.update({0: 60, 1: 80})  # the late records, and this worker's own flush, land meanwhile
        await watch.take_over([0, 2])
        assert watch._owned == {0: 55, 2: 90}
        await watch._write_noted()  # partition 1 went elsewhere: what was noted for it is dropped
        assert watch._noted == {}

    asyncio.run(main())
