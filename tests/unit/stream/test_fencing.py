"""stream.fencing: a changelog replay keeps each user's newest state, whatever order records landed in."""

import json
from types import SimpleNamespace

from stream import metrics
from stream.fencing import fence_user_states, newest_states


def _keep(records, held=None):
    kept, late = newest_states(records, lambda r: r[0], lambda r: r[1], (held or {}).get)
    return [None if r[1] is None else r[1].get("o") for r in kept], late


def test_an_older_state_of_the_same_partition_is_left_out_equal_and_newer_ones_apply():
    assert _keep([("u", {"p": 1, "o": 5}), ("u", {"p": 1, "o": 5}), ("u", {"p": 1, "o": 4}),
                  ("u", {"p": 1, "o": 8})]) == ([5, 5, 8], 1)


def test_a_state_older_than_the_held_one_is_left_out_but_not_counted_late():
    assert _keep([("u", {"p": 1, "o": 5})], {"u": {"p": 1, "o": 6}}) == ([], 0)
    assert _keep([("u", {"p": 1, "o": 7})], {"u": {"p": 1, "o": 6}}) == ([7], 0)


def test_a_tombstone_always_applies_and_whatever_follows_it_too():
    assert _keep([("u", None), ("u", {"p": 1, "o": 2})], {"u": {"p": 1, "o": 6}}) == ([None, 2], 0)


def test_states_of_other_partitions_or_without_an_offset_are_not_compared():
    assert _keep([("u", {"p": 2, "o": 1}), ("u", {"p": 1, "o": 0}), ("u", {}), ("u", {"p": 1, "o": 0})],
                 {"u": {"p": 1, "o": 6}}) == ([1, 0, None, 0], 0)


def test_keys_are_fenced_apart():
    assert _keep([("u", {"p": 0, "o": 3}), ("v", {"p": 0, "o": 1}), ("u", {"p": 0, "o": 2})]) == ([3, 1], 1)


def test_the_table_applies_only_the_newest_states_and_counts_the_rest():
    applied = []
    table = SimpleNamespace(data={"u": {"p": 0, "o": 9}}, apply_changelog_batch=applied.extend)
    fence_user_states(table)

    def event(key: str, value: dict | None):
        return SimpleNamespace(message=SimpleNamespace(key=json.dumps(key).encode(),
                                                       value=None if value is None else json.dumps(value).encode()))

    before = metrics.LATE_USER_STATES._value.get()
    batch = [event("u", {"p": 0, "o": 8}), event("w", {"p": 0, "o": 1}), event("u", {"p": 0, "o": 10}),
             event("u", {"p": 0, "o": 9}), event("u", None)]
    table.apply_changelog_batch(batch)  # o=8: older than the held state (a replay); o=9: after o=10 (late)
    assert applied == [batch[1], batch[2], batch[4]] and metrics.LATE_USER_STATES._value.get() - before == 1
