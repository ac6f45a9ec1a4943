"""``process_or_exit``: a failing batch is retried, and never handed back to Faust (which would
acknowledge it unprocessed); after the last attempt the process exits. Pure control flow."""

import asyncio
from types import SimpleNamespace

from stream import metrics
from stream.pipeline import EXIT_BATCH_FAILED, process_or_exit

BATCH = [SimpleNamespace(message=SimpleNamespace(topic="events-retry", partition=3, offset=41))]


def _failures() -> float:
    return metrics.BATCH_FAILURES.labels("events-retry")._value.get()


def _flaky(failures: int):
    calls = []

    async def process(events):
        calls.append(events)
        if len(calls) <= failures:
            raise ConnectionError("broker went away")

    return process, calls


def test_a_batch_that_fails_then_succeeds_is_retried_and_the_process_stays_up():
    process, calls = _flaky(2)
    exits, before = [], _failures()
    asyncio.run(process_or_exit(process, BATCH, attempts=5, backoff_s=0, exit=exits.append))
    assert len(calls) == 3 and all(c is BATCH for c in calls) and exits == []
    assert _failures() - before == 2


def test_a_batch_that_keeps_failing_ends_the_process_instead_of_returning():
    process, calls = _flaky(10)
    exits = []
    asyncio.run(process_or_exit(process, BATCH, attempts=4, backoff_s=0, exit=exits.append))
    assert len(calls) == 4 and exits == [EXIT_BATCH_FAILED]
