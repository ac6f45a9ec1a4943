"""A user's history is their last ``max_len`` distinct items, oldest first, an item seen again moved
to the end: the oracle below applies events one at a time, as a list would."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from polyrec.history import History

events = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 9)), max_size=12)  # (user row, item row)


def _one_at_a_time(history: dict[int, list[int]], batch: list[tuple[int, int]], max_len: int) -> None:
    for user, item in batch:
        h = history.setdefault(user, [])
        if item in h:
            h.remove(item)
        h.append(item)
        del h[: max(0, len(h) - max_len)]


@settings(max_examples=500)
@given(st.integers(1, 6), st.lists(events, min_size=1, max_size=5))
def test_batches_keep_what_events_one_at_a_time_keep(max_len, batches):
    history, oracle = History(max_len), {}
    for batch in batches:
        history.add(np.array([u for u, _ in batch], np.int64), np.array([i for _, i in batch], np.int64))
        _one_at_a_time(oracle, batch, max_len)
        assert {u: history.get(u) for u in range(5)} == {u: oracle.get(u, []) for u in range(5)}
