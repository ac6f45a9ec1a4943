"""``process_or_dead_letter``: a failing batch is retried and never handed back to Faust (which
would acknowledge it unprocessed): after the last attempt it is dead-lettered, and if that fails
too the process exits. Invalid events are dead-lettered once, with their own reason, however many
attempts the batch takes. Pure control flow, with a fake pipeline."""

import asyncio
from types import SimpleNamespace

from stream import metrics
from stream.dead_letters import EXIT_BATCH_FAILED, process_or_dead_letter
from stream.records import Rejected

BATCH = [SimpleNamespace(message=SimpleNamespace(topic="events-retry", partition=3, offset=41 + n)) for n in range(4)]
INVALID = BATCH[1]  # validation rejects this one


def _failures() -> float:
    return metrics.BATCH_FAILURES.labels("events-retry")._value.get()


class FakeSteps:
    """Learning fails ``learn_failures`` times, the dead-letter send ``dlq_failures`` times."""

    def __init__(self, learn_failures: int = 0, dlq_failures: int = 0) -> None:
        self.learn_failures, self.dlq_failures = learn_failures, dlq_failures
        self.learned, self.dead, self.dlq_calls = [], [], 0

    def validate(self, events):
        return ([(ev, ev.message.offset) for ev in events if ev is not INVALID],
                [(INVALID, Rejected("malformed_json", "not JSON"))])

    async def learn(self, events, valid):
        self.learned.append([parsed for _, parsed in valid])
        if len(self.learned) <= self.learn_failures:
            raise ConnectionError("broker went away")

    async def dead_letter(self, rejected):
        self.dlq_calls += 1
        if self.dlq_calls <= self.dlq_failures:
            raise ConnectionError("broker still away")
        self.dead.extend(rejected)


def _run(steps: FakeSteps, attempts: int = 4) -> list:
    exits = []
    asyncio.run(process_or_dead_letter(steps, BATCH, attempts=attempts, backoff_s=0, exit=exits.append))
    return exits


def test_a_batch_that_fails_then_succeeds_is_retried_and_its_invalid_event_dead_lettered_once():
    steps = FakeSteps(learn_failures=2)
    before = _failures()
    assert _run(steps) == []
    assert steps.learned == [[41, 43, 44]] * 3
    assert [(ev, exc.reason) for ev, exc in steps.dead] == [(INVALID, "malformed_json")]
    assert _failures() - before == 2


def test_a_failed_dead_letter_send_is_retried_before_learning():
    steps = FakeSteps(dlq_failures=1)
    assert _run(steps) == []
    assert steps.learned == [[41, 43, 44]]  # learned only once the invalid event was dead-lettered
    assert [(ev, exc.reason) for ev, exc in steps.dead] == [(INVALID, "malformed_json")]


def test_a_batch_that_keeps_failing_is_dead_lettered_whole_and_the_worker_stays_up():
    steps = FakeSteps(learn_failures=10)
    assert _run(steps) == []
    assert len(steps.learned) == 4
    assert [ev for ev, _ in steps.dead] == [INVALID, BATCH[0], BATCH[2], BATCH[3]]  # every event exactly once
    assert [exc.reason for _, exc in steps.dead] == ["malformed_json"] + ["processing_failed"] * 3
    assert "failed 4 times" in steps.dead[1][1].detail and "ConnectionError" in steps.dead[1][1].detail


def test_when_the_dead_letters_fail_too_the_process_exits_without_returning_the_batch():
    steps = FakeSteps(learn_failures=10, dlq_failures=10)
    assert _run(steps) == [EXIT_BATCH_FAILED]
    assert steps.learned == [] and steps.dead == []  # never got past the first dead letter


def test_a_partly_acknowledged_group_of_dead_letters_is_retried_for_the_rest_only():
    """Two invalid events; the broker acknowledges the first dead letter and not the second: the
    retry sends the second alone (no duplicate in the dead-letter topic)."""
    from stream.dead_letters import DeadLettersNotSent

    invalid = [(BATCH[1], Rejected("malformed_json", "not JSON")), (BATCH[2], Rejected("invalid_id", "empty"))]

    class PartlySent(FakeSteps):
        def validate(self, events):
            return [(BATCH[0], 41), (BATCH[3], 44)], list(invalid)

        async def dead_letter(self, rejected):
            self.dlq_calls += 1
            if self.dlq_calls == 1:
                self.dead.append(rejected[0])
                raise DeadLettersNotSent(list(rejected[1:]), ConnectionError("second one lost"))
            self.dead.extend(rejected)

    steps = PartlySent()
    assert _run(steps) == []
    assert [ev for ev, _ in steps.dead] == [BATCH[1], BATCH[2]]  # each once
    assert steps.learned == [[41, 44]]


def test_dead_letter_reports_what_the_broker_did_not_acknowledge_and_counts_only_the_rest():
    import pytest

    from stream.dead_letters import DeadLettersNotSent, dead_letter

    events = [SimpleNamespace(value=b"x%d" % n, message=SimpleNamespace(topic="events-dl", partition=0, offset=n,
                                                                        key=b"k")) for n in range(3)]
    rejected = [(ev, Rejected("malformed_json", "not JSON")) for ev in events]
    sent = []

    async def produce(topic, key, value, partition, headers):
        future = asyncio.get_running_loop().create_future()
        if value == b"x1":
            future.set_exception(ConnectionError("not acknowledged"))
        else:
            sent.append(value)
            future.set_result(None)
        return future

    counted = metrics.DLQ.labels("events-dl", "malformed_json")._value.get()
    with pytest.raises(DeadLettersNotSent) as exc:
        asyncio.run(dead_letter(produce, "events-dl.dlq", rejected))
    assert exc.value.unsent == [rejected[1]] and sent == [b"x0", b"x2"]
    assert metrics.DLQ.labels("events-dl", "malformed_json")._value.get() - counted == 2


def test_a_dead_letter_that_cannot_even_be_queued_is_reported_unsent():
    import pytest

    from stream.dead_letters import DeadLettersNotSent, dead_letter

    event = SimpleNamespace(value=b"v", message=SimpleNamespace(topic="events-dl", partition=0, offset=0, key=b"k"))

    async def produce(topic, key, value, partition, headers):
        raise RuntimeError("producer closed")

    with pytest.raises(DeadLettersNotSent) as exc:
        asyncio.run(dead_letter(produce, "events-dl.dlq", [(event, Rejected("invalid_id", "empty"))]))
    assert [ev for ev, _ in exc.value.unsent] == [event] and "producer closed" in str(exc.value)
