"""EventPipeline's reporting of stored user states it could not use as is (pure: no I/O)."""

from __future__ import annotations

import logging

from stream.pipeline import EventPipeline


def test_unusable_user_states_are_logged_the_first_ten_times_then_every_thousandth(caplog):
    pipeline = EventPipeline(None, {}, None, None, None, None, {}, None, "v")
    with caplog.at_level(logging.WARNING, logger="stream.pipeline"):
        for n in range(2000):
            pipeline._warn({"moved": [f"u{n}"], "resized": [f"u{n}"] if n < 3 else []})
    moved = [r.getMessage() for r in caplog.records if "another partition" in r.getMessage()]
    resized = [r.getMessage() for r in caplog.records if "another factor dimension" in r.getMessage()]
    assert len(moved) == 12 and "'u999' (1000 such so far)" in moved[10] and "'u1999'" in moved[11]
    assert len(resized) == 3 and pipeline.unusable_states == {"moved": 2000, "resized": 3}
