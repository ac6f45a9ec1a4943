"""Per-event freshness: every event matched to the first write of its user that had learned it."""

import numpy as np

from polyrec.evaluation.freshness import event_freshness


def _w(user: str, event_ts: float, updated_at: float) -> dict:
    return {"user_id": user, "event_ts": event_ts, "updated_at": updated_at}


def test_every_event_of_a_batch_counts_not_only_the_newest() -> None:
    # one batch held a's events at 100 and 150: one payload (event_ts 150) written at 200
    delays, missing = event_freshness(["a", "a", "b"], [100, 150, 120], [_w("b", 120, 190), _w("a", 150, 200)])
    assert sorted(delays.tolist()) == [50.0, 70.0, 100.0]
    assert missing == 0


def test_an_event_goes_to_the_first_write_that_covers_it() -> None:
    writes = [_w("a", 100, 110), _w("a", 200, 260), _w("a", 300, 305)]
    delays, missing = event_freshness(["a", "a", "a"], [100, 180, 300], writes)
    assert delays.tolist() == [10.0, 80.0, 5.0]
    assert missing == 0


def test_events_no_write_covers_are_counted_missing() -> None:
    delays, missing = event_freshness(["a", "a", "c"], [100, 400, 50], [_w("a", 100, 130)])
    assert delays.tolist() == [30.0]
    assert missing == 2


def test_a_write_with_an_older_event_ts_does_not_cover_a_newer_event() -> None:
    # a replayed batch wrote a stale payload (event_ts 100) after the one covering ts 200
    writes = [_w("a", 200, 230), _w("a", 100, 240)]
    delays, _ = event_freshness(["a", "a"], [100, 200], writes)
    assert np.array_equal(delays, [130.0, 30.0])
