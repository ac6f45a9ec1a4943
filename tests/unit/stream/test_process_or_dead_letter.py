"""``process_or_dead_letter``: a failing batch is never handed back to Faust (which would
acknowledge it unprocessed). An outage of the broker or Redis is waited out, however long; any
other error is retried, then the batch is bisected so that only the records that fail alone are
dead-lettered; if the dead letters fail too, the process exits. Invalid events are dead-lettered
once, with their own reason, however many attempts the batch takes. Pure control flow, with a fake
pipeline."""

import asyncio
from types import SimpleNamespace

import pytest

from stream import metrics
from stream.dead_letters import EXIT_BATCH_FAILED, Stalls, is_infrastructure, process_or_dead_letter
from stream.records import Rejected

BATCH = [SimpleNamespace(message=SimpleNamespace(topic="events-retry", partition=3, offset=41 + n)) for n in range(4)]
INVALID = BATCH[1]  # validation rejects this one


def _failures() -> float:
    return metrics.BATCH_FAILURES.labels("events-retry")._value.get()


class FakeSteps:
    """Learning fails ``learn_failures`` times with ``error``, and always while ``poison`` (an offset)
    is in the batch; the dead-letter send fails ``dlq_failures`` times with ``dlq_error``."""

    def __init__(self, learn_failures: int = 0, dlq_failures: int = 0, error: type = ConnectionError,
                 poison: int | None = None, dlq_error: type = ConnectionError, stalls: Stalls | None = None) -> None:
        self.learn_failures, self.dlq_failures, self.error = learn_failures, dlq_failures, error
        self.poison, self.dlq_error, self.stalls = poison, dlq_error, stalls
        self.learned, self.dead, self.dlq_calls, self.stalled = [], [], 0, []

    def validate(self, events):
        return ([(ev, ev.message.offset) for ev in events if ev is not INVALID],
                [(INVALID, Rejected("malformed_json", "not JSON"))])

    async def learn(self, events, valid):
        offsets = [parsed for _, parsed in valid]
        self.learned.append(offsets)
        if self.stalls is not None:
            self.stalled.append(self.stalls.waiting)
        if len(self.learned) <= self.learn_failures:
            raise self.error("broker went away")
        if self.poison in offsets:
            raise ValueError(f"cannot learn offset {self.poison}")

    async def dead_letter(self, rejected):
        self.dlq_calls += 1
        if self.dlq_calls <= self.dlq_failures:
            raise self.dlq_error("broker still away")
        self.dead.extend(rejected)


def _run(steps: FakeSteps, attempts: int = 4, stalls: Stalls | None = None) -> list:
    exits = []
    asyncio.run(process_or_dead_letter(steps, BATCH, attempts=attempts, backoff_s=0, stalls=stalls,
                                       exit=exits.append))
    return exits


def test_a_batch_that_fails_then_succeeds_is_retried_and_its_invalid_event_dead_lettered_once():
    steps = FakeSteps(learn_failures=2, error=ValueError)
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


def test_an_outage_longer_than_every_attempt_is_waited_out_and_nothing_valid_is_dead_lettered():
    """Hole 2 of the reliability issue: five failed attempts (~7.5 s) used to dead-letter every valid
    event of the batch as processing_failed, and commit it."""
    stalls = Stalls()
    steps = FakeSteps(learn_failures=25, stalls=stalls)
    assert _run(steps, stalls=stalls) == []
    assert steps.learned == [[41, 43, 44]] * 26  # the same batch, whole, until the broker is back
    assert [(ev, exc.reason) for ev, exc in steps.dead] == [(INVALID, "malformed_json")]
    assert steps.stalled == [0] + [1] * 25 and stalls.waiting == 0  # not ready while it waits, ready after


def test_a_poison_record_is_found_by_bisection_and_dead_lettered_alone():
    steps = FakeSteps(poison=43)
    assert _run(steps) == []
    assert [ev for ev, _ in steps.dead] == [INVALID, BATCH[2]]
    assert [exc.reason for _, exc in steps.dead] == ["malformed_json", "processing_failed"]
    assert "ValueError" in steps.dead[1][1].detail and "cannot learn offset 43" in steps.dead[1][1].detail
    learned = [offsets for offsets in steps.learned if 43 not in offsets]
    assert learned == [[41], [44]]  # everything but the poison learned, in offset order
    assert steps.learned[:4] == [[41, 43, 44]] * 4  # the whole batch was tried its 4 attempts first


def test_a_batch_whose_every_record_fails_is_dead_lettered_record_by_record_and_the_worker_stays_up():
    steps = FakeSteps(learn_failures=100, error=ValueError)
    assert _run(steps) == []
    assert [ev for ev, _ in steps.dead] == [INVALID, BATCH[0], BATCH[2], BATCH[3]]  # every event exactly once
    assert [exc.reason for _, exc in steps.dead] == ["malformed_json"] + ["processing_failed"] * 3


def test_when_the_dead_letters_fail_too_the_process_exits_without_returning_the_batch():
    steps = FakeSteps(learn_failures=100, error=ValueError, dlq_failures=100, dlq_error=RuntimeError)
    assert _run(steps) == [EXIT_BATCH_FAILED]
    assert steps.dead == []


def test_errors_of_the_broker_redis_and_the_network_are_the_infrastructures_even_when_wrapped():
    from aiokafka.errors import KafkaTimeoutError
    from faust.exceptions import ProducerSendError
    from redis.exceptions import ConnectionError as RedisConnectionError

    def wrapped(cause: BaseException) -> BaseException:
        try:
            raise ProducerSendError("Error while sending") from cause
        except ProducerSendError as exc:
            return exc

    for exc in (KafkaTimeoutError(), RedisConnectionError(), TimeoutError(), ConnectionResetError(),
                wrapped(KafkaTimeoutError())):
        assert is_infrastructure(exc), exc
    for exc in (ValueError("bad"), KeyError("x"), wrapped(ValueError("bad"))):
        assert not is_infrastructure(exc), exc


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
    from stream.dead_letters import DeadLettersNotSent, dead_letter

    event = SimpleNamespace(value=b"v", message=SimpleNamespace(topic="events-dl", partition=0, offset=0, key=b"k"))

    async def produce(topic, key, value, partition, headers):
        raise RuntimeError("producer closed")

    with pytest.raises(DeadLettersNotSent) as exc:
        asyncio.run(dead_letter(produce, "events-dl.dlq", [(event, Rejected("invalid_id", "empty"))]))
    assert [ev for ev, _ in exc.value.unsent] == [event] and "producer closed" in str(exc.value)


def test_a_batch_cancelled_while_it_waits_out_an_outage_stops_without_exiting():
    """A revoked partition's actor is cancelled during an outage: the cancellation goes through (the
    batch stays unacknowledged: stream.app.Worker._consume), the process does not exit, and the
    batch no longer counts as stalled."""
    steps, exits, stalls = FakeSteps(learn_failures=10**9), [], Stalls()

    async def scenario() -> None:
        task = asyncio.create_task(process_or_dead_letter(steps, BATCH, backoff_s=0.001, max_backoff_s=0.001,
                                                          stalls=stalls, exit=exits.append))
        while len(steps.learned) < 3:
            await asyncio.sleep(0.001)
        assert stalls.waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert exits == [] and stalls.waiting == 0 and steps.dead == [(INVALID, steps.dead[0][1])]
