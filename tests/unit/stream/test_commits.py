"""FlushOnCommit: a commit of an events partition first writes that partition's item contributions,
and a failed write stops the commit (pure: a Faust app that is never started; the integration
tests in tests/integration/test_stream_integration.py cover it on a real broker)."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP

from stream.faust_patches import install_flush_on_commit


def test_a_commit_of_an_events_partition_flushes_that_partition_first_and_a_failed_flush_stops_it():
    flushed: list[list[int]] = []
    fail = False

    async def flush(partitions) -> None:
        if fail:
            raise ConnectionError("broker gone")
        flushed.append(list(partitions))

    app = faust.App("commits-test", broker="kafka://127.0.0.1:1")
    install_flush_on_commit(app, "events", flush)

    async def commit(tp: TP, offset: int) -> list:  # what Faust's consumer awaits before committing
        return await app._attachments.publish_for_tp_offset(tp, offset)

    assert asyncio.run(commit(TP("events", 3), 10)) == []
    assert asyncio.run(commit(TP("users-changelog", 3), 10)) == []  # other topics: Faust's own path only
    assert flushed == [[3]]
    fail = True
    with pytest.raises(ConnectionError, match="broker gone"):
        asyncio.run(commit(TP("events", 1), 20))
    assert flushed == [[3]]
