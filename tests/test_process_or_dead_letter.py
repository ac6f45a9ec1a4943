"""``process_or_dead_letter``: a failing batch is retried and never handed back to Faust (which
would acknowledge it unprocessed): after the last attempt it is dead-lettered, and if that fails
too the process exits. Pure control flow, with fakes for the batch step and the dead-letter send."""

import asyncio
from types import SimpleNamespace

from stream import metrics
from stream.pipeline import EXIT_BATCH_FAILED, process_or_dead_letter

BATCH = [SimpleNamespace(message=SimpleNamespace(topic="events-retry", partition=3, offset=41 + n)) for n in range(3)]


def _failures() -> float:
    return metrics.BATCH_FAILURES.labels("events-retry")._value.get()


def _flaky(failures: int):
    calls = []

    async def process(events):
        calls.append(events)
        if len(calls) <= failures:
            raise ConnectionError("broker went away")

    return process, calls


def _run(process, *, dlq_works: bool = True, attempts: int = 4):
    dead, exits = [], []

    async def dlq(rejected):
        if not dlq_works:
            raise ConnectionError("broker still away")
        dead.extend(rejected)

    asyncio.run(process_or_dead_letter(process, BATCH, dlq, attempts=attempts, backoff_s=0, exit=exits.append))
    return dead, exits


def test_a_batch_that_fails_then_succeeds_is_retried_and_nothing_is_dead_lettered():
    process, calls = _flaky(2)
    before = _failures()
    assert _run(process) == ([], [])
    assert len(calls) == 3 and all(c is BATCH for c in calls)
    assert _failures() - before == 2


def test_a_batch_that_keeps_failing_is_dead_lettered_whole_and_the_worker_stays_up():
    process, calls = _flaky(10)
    dead, exits = _run(process)
    assert len(calls) == 4 and exits == []
    assert [ev for ev, _ in dead] == BATCH
    assert {exc.reason for _, exc in dead} == {"processing_failed"}
    assert "failed 4 times" in dead[0][1].detail and "ConnectionError" in dead[0][1].detail


def test_when_the_dead_letters_fail_too_the_process_exits_without_returning_the_batch():
    process, calls = _flaky(10)
    dead, exits = _run(process, dlq_works=False)
    assert len(calls) == 4 and dead == [] and exits == [EXIT_BATCH_FAILED]
