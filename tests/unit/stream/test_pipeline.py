"""EventPipeline's accounting: stored user states it could not use as is, and dead-lettered
events in ``polyrec_events_total`` (pure: no broker; the produce step only records its sends)."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest

from polyrec.mf import MFConfig
from stream import metrics
from stream.dead_letters import DLQ_DETAIL_BYTES, dlq_headers
from stream.fencing import erasure_header, writer_header
from stream.pipeline import EventPipeline
from stream.records import PROCESSING_FAILED, Rejected
from stream.state import RecsJob, WorkerModel
from stream.wire import UserState
from tests.support import acked

DLQ = {"dlq": "events.dlq"}  # the topics of a pipeline that writes nothing else


def test_unusable_user_states_are_logged_the_first_ten_times_then_every_thousandth(caplog):
    pipeline = EventPipeline(None, {}, None, None, None, None, DLQ, None, "v", barrier=None, memory_ready=None)
    with caplog.at_level(logging.WARNING, logger="stream.pipeline"):
        for n in range(2000):
            pipeline._warn({"moved": [f"u{n}"], "resized": [f"u{n}"] if n < 3 else []})
    moved = [r.getMessage() for r in caplog.records if "another partition" in r.getMessage()]
    resized = [r.getMessage() for r in caplog.records if "another factor dimension" in r.getMessage()]
    assert len(moved) == 12 and "'u999' (1000 such so far)" in moved[10] and "'u1999'" in moved[11]
    assert len(resized) == 3 and pipeline.unusable_states == {"moved": 2000, "resized": 3}


def test_a_stored_state_that_cannot_be_decoded_is_warned_about_and_treated_as_none(caplog):
    # failing would fail the batch, and after five attempts dead-letter every event in it
    table = {"u1": {"f": "not base64!", "g": 1.0, "h": [], "o": 3}, "u2": {"g": 1.0}, "u3": ["not", "a", "state"]}
    pipeline = EventPipeline(None, {}, None, table.get, None, None, DLQ, None, "v", barrier=None, memory_ready=None)
    with caplog.at_level(logging.WARNING, logger="stream.pipeline"):
        states = pipeline._load_states(["u1", "u2", "u3", "u4"], 0)
    assert states == {"u1": None, "u2": None, "u3": None, "u4": None}
    assert pipeline.unusable_states == {"unreadable": 3}
    assert sum("cannot be decoded" in r.getMessage() for r in caplog.records) == 3


def test_dead_lettered_events_count_by_type_when_valid_and_as_invalid_otherwise():
    sent = []

    async def produce(topic, key, value, partition, headers):
        sent.append(topic)
        return acked()

    def event(value: bytes, offset: int) -> SimpleNamespace:
        return SimpleNamespace(value=value, message=SimpleNamespace(topic="events", partition=0, offset=offset,
                                                                     key=b"u1"))

    click = event(json.dumps({"user_id": "u1", "item_id": "i1", "event": "click", "ts": 1}).encode(), 1)
    pipeline = EventPipeline(None, {}, produce, None, None, None, DLQ, None, "v", barrier=None,
                             memory_ready=None)
    before = {k: metrics.EVENTS.labels(k, "dead_lettered")._value.get() for k in ("click", "invalid")}
    asyncio.run(pipeline.dead_letter([(click, Rejected(PROCESSING_FAILED, "its batch failed")),
                                      (event(b"{", 2), Rejected("malformed_json", "not JSON"))]))
    after = {k: metrics.EVENTS.labels(k, "dead_lettered")._value.get() for k in ("click", "invalid")}
    assert sent == ["events.dlq"] * 2
    assert {k: after[k] - before[k] for k in after} == {"click": 1, "invalid": 1}


def test_dead_letters_go_to_their_source_partition_and_those_sent_before_a_restart_are_not_sent_again():
    sent = []

    async def produce(topic, key, value, partition, headers):
        sent.append((partition, dict(headers)["polyrec-source-offset"]))
        return acked()

    def bad(partition: int, offset: int) -> tuple[SimpleNamespace, Rejected]:
        message = SimpleNamespace(topic="events", partition=partition, offset=offset, key=b"u1")
        return SimpleNamespace(value=b"{", message=message), Rejected("malformed_json", "not JSON")

    pipeline = EventPipeline(None, {}, produce, None, None, None, DLQ, None, "v", barrier=None,
                             memory_ready=None)
    asyncio.run(pipeline.dead_letter([bad(5, 1)]))
    assert sent == [(None, b"1")]  # before the first assignment read the topic back: by key
    sent.clear()
    pipeline.dead_letters.resume(4, {1: {10, 11}, 5: {10}})  # a killed worker sent these, uncommitted
    asyncio.run(pipeline.dead_letter([bad(1, 10), bad(1, 12), bad(5, 10), bad(5, 11), bad(1, 11)]))
    assert sent == [(1, b"12"), (1, b"11")]  # source partition 5 of a 4-partition topic: its partition 1


def test_the_detail_header_is_at_most_its_byte_limit_in_whole_characters():
    headers = dict(dlq_headers("malformed_json", "é" * 400 + "日本" * 200, "events", 0, 1))
    detail = headers["polyrec-detail"]
    assert DLQ_DETAIL_BYTES - 3 < len(detail) <= DLQ_DETAIL_BYTES
    assert detail.decode("utf-8") == "é" * 250  # 2 bytes each: no character cut in half


def test_a_batch_waits_at_the_hand_over_barrier_before_anything_is_learned():
    async def barrier(partition: int) -> None:
        raise TimeoutError(f"replica behind for partition {partition}")

    event = SimpleNamespace(message=SimpleNamespace(topic="events", partition=2, offset=5))
    pipeline = EventPipeline(None, {}, None, None, None, None, DLQ, None, "v", barrier=barrier,
                             memory_ready=None)  # no model
    with pytest.raises(TimeoutError, match="partition 2"):  # not the AttributeError of learning with no model
        asyncio.run(pipeline.learn([event], [(event, None)]))


class Publisher:
    """Records what it is asked to write to Redis; the first ``failures`` calls raise instead, and the
    payloads of users in ``stale`` are refused as older than the one Redis holds."""

    def __init__(self, failures: int = 0, forget_fails: bool = False) -> None:
        self.payloads: list[dict] = []
        self.forgotten: list[str] = []
        self.stale: set[str] = set()
        self.calls, self.failures, self.forget_fails = 0, failures, forget_fails

    async def publish(self, payloads: list[dict]) -> list[dict]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("redis is down")
        self.payloads += [p for p in payloads if p["user_id"] not in self.stale]
        return [p for p in payloads if p["user_id"] in self.stale]

    async def forget(self, user_id: str, partition: int, offset: int) -> bool:
        if self.forget_fails:
            raise ConnectionError("redis is down")
        self.forgotten.append(user_id)
        return True


def learning(produce, publisher: Publisher, stored: list, persisted: list, redis_retries: int = 5,
             table: dict | None = None):
    """A pipeline over a real model (8 items, dim 4) and a batch of 4 clicks by u0 and u1: run
    ``asyncio.run(pipeline.learn(*batch))``. Local-store writes go to ``stored`` (their keys) and to
    ``table`` (a dict, new if not given), which the pipeline reads user states back from; persisted
    changelog offsets go to ``persisted``."""
    async def barrier(partition: int) -> None:
        pass

    table = {} if table is None else table

    def store(partition: int, key: str, value: dict | None) -> None:
        stored.append(key)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    model = WorkerModel(MFConfig(dim=4), history_max=10, k=3)
    model.mf.add_items([f"i{n}" for n in range(8)])

    async def memory_ready(partition: int, offset: int, timeout: float) -> bool:
        """The events replica, read up to ``offset``: the memory learns the batch's events."""
        model.learn_memory([f"u{n % 2}" for n in range(offset + 1)], [f"i{n}" for n in range(offset + 1)])
        return True

    events = [SimpleNamespace(message=SimpleNamespace(topic="events", partition=0, offset=n, timestamp=0.0,
                                                      key=f"u{n % 2}".encode()),
                              value=json.dumps({"user_id": f"u{n % 2}", "item_id": f"i{n}", "event": "click",
                                                "ts": n}).encode())
              for n in range(4)]
    pipeline = EventPipeline(model, {"click": 1.0}, produce, table.get, store, lambda *a: persisted.append(a),
                             {"users": "users", "items": "items", "dlq": "events.dlq"}, publisher, "v",
                             barrier=barrier, memory_ready=memory_ready, redis_retries=redis_retries)
    valid, rejected = pipeline.validate(events)
    assert not rejected
    return pipeline, (events, valid)


async def produce_acked(topic, key, value, partition, headers):
    return acked(SimpleNamespace(offset=7))


def recording(sends: list[tuple]):
    """A produce step that records each send's (topic, key, value), acknowledged at its position."""
    async def produce(topic, key, value, partition, headers):
        sends.append((topic, key, value))
        return acked(SimpleNamespace(offset=len(sends)))
    return produce


async def learn_and_flush(pipeline: EventPipeline, batch: tuple) -> None:
    """A batch, then the flush that precedes its partition's offset commit."""
    await pipeline.learn(*batch)
    await pipeline.flush([0])


def test_a_batch_is_learned_on_the_event_loop_and_its_top_k_computed_in_a_thread_of_its_own(monkeypatch):
    threads = []
    run = RecsJob.run

    def watched(job: RecsJob) -> list:
        threads.append(threading.current_thread().name)
        return run(job)

    monkeypatch.setattr(RecsJob, "run", watched)
    publisher = Publisher()
    pipeline, batch = learning(produce_acked, publisher, [], [])
    asyncio.run(pipeline.learn(*batch))
    assert len(threads) == 1 and threads[0].startswith("polyrec-top-k")  # its own one-thread pool
    assert {p["user_id"] for p in publisher.payloads} == {"u0", "u1"}
    seen = {"u0": {"i0", "i2"}, "u1": {"i1", "i3"}}
    for p in publisher.payloads:
        assert len(p["items"]) == 3 and not {x["item_id"] for x in p["items"]} & seen[p["user_id"]]


def test_redis_write_failures_are_retried_and_counted():
    publisher, stored, persisted = Publisher(failures=2), [], []
    errors, published = metrics.REDIS_ERRORS._value.get(), metrics.RECS._value.get()
    pipeline, batch = learning(produce_acked, publisher, stored, persisted)
    asyncio.run(learn_and_flush(pipeline, batch))
    assert publisher.calls == 3 and {p["user_id"] for p in publisher.payloads} == {"u0", "u1"}
    assert metrics.REDIS_ERRORS._value.get() - errors == 2 and metrics.RECS._value.get() - published == 2
    assert sorted(stored) == ["u0", "u1"] and persisted == [(0, 7)]


def test_a_redis_outage_holds_the_payloads_and_keeps_the_learned_state(caplog):
    """The batch is not failed (its state is in the changelog): retried ``redis_retries`` times,
    logged, counted, its payloads held for the partition's next batch."""
    publisher, stored, persisted = Publisher(failures=10**6), [], []
    errors, published = metrics.REDIS_ERRORS._value.get(), metrics.RECS._value.get()
    pipeline, batch = learning(produce_acked, publisher, stored, persisted, redis_retries=3)
    started = time.perf_counter()
    with caplog.at_level(logging.ERROR, logger="stream.pipeline"):
        asyncio.run(learn_and_flush(pipeline, batch))
    assert time.perf_counter() - started < 0.6  # 0.1 + 0.2 s between the attempts, no sleep after the last
    assert publisher.calls == 3 and not publisher.payloads
    assert metrics.REDIS_ERRORS._value.get() - errors == 3 and metrics.RECS._value.get() == published
    assert "redis write failed 3 times: holding 2 recommendation payloads of partition 0" in caplog.text
    assert sorted(stored) == ["u0", "u1"] and persisted == [(0, 7)]


def test_user_states_written_to_the_changelog_are_counted_with_their_bytes():
    sends: list[tuple] = []

    async def produce(topic, key, value, partition, headers):
        sends.append((topic, key, value))
        return acked(SimpleNamespace(offset=len(sends)))

    states, size = metrics.USER_STATES_WRITTEN._value.get(), metrics.USER_STATE_BYTES._value.get()
    pipeline, batch = learning(produce, Publisher(), [], [])
    asyncio.run(learn_and_flush(pipeline, batch))
    written = [(key, value) for topic, key, value in sends if topic == "users"]
    assert len(written) == 2 and metrics.USER_STATES_WRITTEN._value.get() - states == 2
    assert metrics.USER_STATE_BYTES._value.get() - size == sum(len(k) + len(v) for k, v in written)


def test_a_failed_flush_stores_nothing_locally_and_keeps_the_states_for_the_next():
    """A RocksDB store recovers from the offset it was told the changelog holds: a user state the
    broker did not acknowledge must not be in the local store, nor its offset reported; the flush
    raises (so the commit waiting on it does not happen) and the next one sends the states."""
    down = [True]

    async def produce(topic, key, value, partition, headers):
        if topic == "users" and down[0]:
            failed = asyncio.get_running_loop().create_future()
            failed.set_exception(ConnectionError("broker gone"))
            return failed
        return acked(SimpleNamespace(offset=7))

    stored, persisted = [], []
    pipeline, batch = learning(produce, Publisher(), stored, persisted)
    asyncio.run(pipeline.learn(*batch))
    with pytest.raises(ConnectionError, match="broker gone"):
        asyncio.run(pipeline.flush([0]))
    assert stored == [] and persisted == []
    down[0] = False
    asyncio.run(pipeline.flush([0]))
    assert sorted(stored) == ["u0", "u1"] and persisted == [(0, 7)]


def test_user_states_are_held_until_a_flush_and_read_before_the_table():
    """One changelog record per user per flush, however many batches touched them; between
    flushes a batch reads its users' newest states from what is held, not from the table."""
    sends: list[tuple] = []
    table: dict[str, dict] = {}
    pipeline, batch = learning(recording(sends), Publisher(), [], [], table=table)
    asyncio.run(pipeline.learn(*batch))
    assert table == {} and sends == []
    held = pipeline._load_states(["u0", "u1"], 0)
    assert (held["u0"].offset, held["u0"].applied, held["u1"].offset) == (2, 2, 3)
    asyncio.run(pipeline.learn(*batch))  # the same events again: recognised from the held states
    asyncio.run(pipeline.flush([0]))
    assert sorted(user for topic, user, _ in sends if topic == "users") == [b'"u0"', b'"u1"']
    assert {u: (table[u]["o"], table[u]["n"]) for u in table} == {"u0": (2, 2), "u1": (3, 2)}
    asyncio.run(pipeline.flush([0]))  # nothing new: nothing sent
    assert sum(topic == "users" for topic, _, _ in sends) == 2


def test_while_a_flush_waits_for_the_broker_batches_still_read_the_held_states():
    """A flush in flight (a slow broker, a broker cut) must not hide the states it is writing: a
    batch meanwhile would read the table's older state and lose what the held one applied (the
    broker-cut and rebalance fault tests lost 5-80 events per user that way)."""
    release = asyncio.Event()

    async def produce(topic, key, value, partition, headers):
        if topic == "users":
            await release.wait()
        return acked(SimpleNamespace(offset=7))

    async def scenario() -> None:
        table: dict[str, dict] = {}
        pipeline, batch = learning(produce, Publisher(), [], [], table=table)
        await pipeline.learn(*batch)
        flushing = asyncio.ensure_future(pipeline.flush([0]))
        await asyncio.sleep(0.01)
        assert table == {} and pipeline._load_states(["u0"], 0)["u0"].applied == 2
        release.set()
        await flushing
        assert table["u0"]["n"] == 2 and pipeline.held_state("u0") is None

    asyncio.run(scenario())


def test_an_erased_users_held_state_is_never_flushed_after_the_tombstone():
    sends: list[tuple] = []
    table: dict[str, dict] = {}
    pipeline, batch = learning(recording(sends), Publisher(), [], [], table=table)
    asyncio.run(pipeline.learn(*batch))
    request = SimpleNamespace(message=SimpleNamespace(topic="events", partition=0, offset=9))
    asyncio.run(pipeline._forget(request, "u0"))
    asyncio.run(pipeline.flush([0]))
    assert [(user, value is None) for topic, user, value in sends if topic == "users"] == [(b'"u0"', True),
                                                                                          (b'"u1"', False)]
    assert list(table) == ["u1"]


def test_a_replayed_batch_is_not_counted_again_in_freshness():
    """After a rebalance, restart or crash, events since the last commit are delivered again. Their
    delay (the whole outage) is not a freshness sample, whether the worker still holds what it learned
    (a duplicate) or restarted after a crash, with the users' states in the table but the items'
    contributions lost (new to items, old to users)."""
    from prometheus_client import REGISTRY

    def samples() -> float:
        return REGISTRY.get_sample_value("polyrec_freshness_seconds_count") or 0.0

    def duplicates() -> float:
        return REGISTRY.get_sample_value("polyrec_events_total", {"type": "click", "outcome": "duplicate"}) or 0.0

    table: dict[str, dict] = {}
    pipeline, batch = learning(produce_acked, Publisher(), [], [], table=table)
    before, replayed = samples(), duplicates()
    asyncio.run(learn_and_flush(pipeline, batch))
    assert samples() - before == 4
    asyncio.run(pipeline.learn(*batch))  # the same offsets again, same worker
    assert duplicates() - replayed == 4, "the replay was not recognised as one"
    assert samples() - before == 4
    restarted, batch = learning(produce_acked, Publisher(), [], [], table=table)  # a new model, same table
    asyncio.run(restarted.learn(*batch))
    assert duplicates() - replayed == 4, "new to the restarted worker's items: not a duplicate"
    assert samples() - before == 4


def _payloads(tag: str, *users: str) -> list[dict]:
    return [{"user_id": u, "items": [], "tag": tag} for u in users]


def _written(publisher: Publisher) -> list[str]:
    return [f"{p['user_id']}{p['tag']}" for p in publisher.payloads]


def test_payloads_redis_did_not_take_go_out_with_their_partitions_next_batch_unless_superseded():
    publisher = Publisher(failures=2)
    pipeline = EventPipeline(WorkerModel(MFConfig(dim=4)), {}, None, None, None, None, DLQ, publisher, "v",
                             barrier=None, memory_ready=None, redis_retries=2)
    asyncio.run(pipeline._publish(0, _payloads("1", "a", "b")))  # both attempts fail: held
    assert publisher.payloads == [] and metrics.RECS_HELD._value.get() == 2
    asyncio.run(pipeline._publish(1, _payloads("1", "c")))  # another partition's batch: only its own
    assert _written(publisher) == ["c1"]
    asyncio.run(pipeline._publish(0, _payloads("2", "b", "d")))  # b's newer payload supersedes the held one
    assert _written(publisher) == ["c1", "b2", "d2", "a1"] and metrics.RECS_HELD._value.get() == 0


def test_held_payloads_of_a_partition_given_away_stay_held_and_redis_keeps_the_newer_payload():
    """A user whose last event came during the outage has no newer event for the partition's next owner
    to write: their payload must not be dropped at the hand-over (a rebalance during a Redis outage)."""
    publisher = Publisher(failures=2)
    pipeline = EventPipeline(WorkerModel(MFConfig(dim=4)), {}, None, None, None, None, DLQ, publisher, "v",
                             barrier=None, memory_ready=None, redis_retries=2)
    dropped = metrics.RECS_DROPPED._value.get()
    asyncio.run(pipeline._publish(3, _payloads("1", "e", "g")))
    pipeline.revoked([3])
    assert metrics.RECS_HELD._value.get() == 2 and metrics.RECS_DROPPED._value.get() == dropped
    publisher.stale = {"g"}  # the next owner already wrote g's newer payload: Redis refuses this one
    stale = metrics.RECS_STALE._value.get()
    assert asyncio.run(pipeline.write_held()) == 2
    assert _written(publisher) == ["e1"] and metrics.RECS_STALE._value.get() - stale == 1
    assert metrics.RECS_HELD._value.get() == 0


def test_held_payloads_are_written_once_redis_answers_without_a_batch_even_once_given_away(monkeypatch):
    import stream.pipeline

    monkeypatch.setattr(stream.pipeline, "HELD_CHUNK", 2)
    publisher = Publisher(failures=3)
    pipeline = EventPipeline(WorkerModel(MFConfig(dim=4)), {}, None, None, None, None, DLQ, publisher, "v",
                             barrier=None, memory_ready=None, redis_retries=2)
    asyncio.run(pipeline._publish(0, _payloads("1", "a", "b", "c")))  # both attempts fail: held
    asyncio.run(pipeline._publish(1, _payloads("1", "d")))  # (its first attempt fails, the second writes it)
    assert asyncio.run(pipeline.write_held()) == 3 and publisher.calls == 6  # two chunks of partition 0
    assert _written(publisher) == ["d1", "a1", "b1", "c1"] and metrics.RECS_HELD._value.get() == 0
    assert asyncio.run(pipeline.write_held()) == 0 and publisher.calls == 6  # nothing held: no call

    down = Publisher(failures=10)
    pipeline = EventPipeline(WorkerModel(MFConfig(dim=4)), {}, None, None, None, None, DLQ, down, "v", barrier=None,
                             memory_ready=None, redis_retries=1)
    asyncio.run(pipeline._publish(0, _payloads("1", "a")))
    asyncio.run(pipeline._publish(1, _payloads("1", "b")))
    assert asyncio.run(pipeline.write_held()) == 0 and down.calls == 3  # Redis still down: one try, then it stops
    pipeline.revoked([0, 1])  # given away: still this worker's to write (Redis keeps the newer payload)
    down.failures = 0
    assert asyncio.run(pipeline.write_held()) == 2 and [p["user_id"] for p in down.payloads] == ["a", "b"]


def test_at_most_held_max_payloads_are_held_the_oldest_go_first(monkeypatch):
    import stream.pipeline

    monkeypatch.setattr(stream.pipeline, "HELD_MAX", 3)
    publisher = Publisher(failures=2)
    pipeline = EventPipeline(WorkerModel(MFConfig(dim=4)), {}, None, None, None, None, DLQ, publisher, "v",
                             barrier=None, memory_ready=None, redis_retries=2)
    dropped = metrics.RECS_DROPPED._value.get()
    asyncio.run(pipeline._publish(0, _payloads("1", "u0", "u1", "u2", "u3", "u4")))
    assert metrics.RECS_DROPPED._value.get() - dropped == 2
    asyncio.run(pipeline._publish(0, []))
    assert _written(publisher) == ["u21", "u31", "u41"]


def _request(user: str, offset: int) -> SimpleNamespace:
    return SimpleNamespace(message=SimpleNamespace(topic="events", partition=0, offset=offset, timestamp=0.0,
                                                   key=user.encode()),
                           value=json.dumps({"user_id": user, "event": "forget", "ts": 9}).encode())


@pytest.mark.parametrize("redis_fails", [False, True])
def test_an_erasure_request_is_applied_in_its_place_between_the_events_around_it(redis_fails, caplog):
    sends: list[tuple] = []

    async def produce(topic, key, value, partition, headers):
        sends.append((topic, key, value))
        tombstone_headers.extend((headers or []) if value is None else [])
        return acked(SimpleNamespace(offset=len(sends)))

    stored, persisted, tombstone_headers = [], [], []
    table: dict = {}
    publisher = Publisher(forget_fails=redis_fails)
    pipeline, (events, _) = learning(produce, publisher, stored, persisted, table=table)
    batch = events[:2] + [_request("u0", 2)] + events[2:]  # u0, u1, forget u0, u0, u1 (offsets re-numbered)
    for n, ev in enumerate(batch):
        ev.message.offset = n
    valid, rejected = pipeline.validate(batch)
    assert not rejected
    pipeline._held[0] = {"u0": {"user_id": "u0"}, "u1": {"user_id": "u1"}}  # held while Redis was down
    with caplog.at_level(logging.WARNING, logger="stream.pipeline"):
        asyncio.run(learn_and_flush(pipeline, (batch, valid)))
    changelog = [(key, value) for topic, key, value in sends if topic == "users"]
    # u0's tombstone, then at the flush u0 (back, a new user) and u1: u0's state from before the
    # request, held for the flush, is never sent
    keys = [key for key, _ in changelog]
    assert changelog[0] == (b'"u0"', None) and sorted(keys[1:]) == [b'"u0"', b'"u1"']
    # the request's place (late states after it lose), and the writer (its own records are not late to it)
    assert tombstone_headers == [erasure_header(0, 2), writer_header(pipeline.model.writer)]
    assert pipeline.erasures == {(0, "u0"): (0, 2)}
    back = dict(changelog[1:])[b'"u0"']
    assert json.loads(back)["h"] == ["i2"]  # nothing of before the request
    assert "u0" not in pipeline._held[0] and "u0" in table
    assert metrics.USERS_FORGOTTEN._value.get() >= 1
    if redis_fails:  # the key is left to `polyrec forget`, which deletes it again: a warning, no failure
        assert publisher.forgotten == [] and any("Redis key was not deleted" in r.getMessage() for r in caplog.records)
    else:
        assert publisher.forgotten == ["u0"]


def test_a_late_record_makes_the_newer_state_or_the_erasure_the_last_record_again():
    sends: list[tuple] = []

    async def produce(topic, key, value, partition, headers):
        sends.append((topic, key, None if value is None else json.loads(value)["o"], partition, headers))
        return acked(SimpleNamespace(offset=len(sends)))

    def state(offset: int) -> UserState:
        return UserState(np.zeros(4, np.float32), 0.0, [], offset, 1, 1)

    stored, persisted = [], []
    table = {"back": state(60).to_json(), "newer": state(10).to_json(), "other": {**state(9).to_json(), "p": 2}}
    pipeline, _ = learning(produce, Publisher(), stored, persisted, table=table)
    pipeline.erasures.update({(1, "gone"): (1, 50), (1, "gone2"): (1, 50)})
    pipeline._states[1] = {"held": state(70)}  # learned since the last flush
    late = {"gone": (1, 48),  # erased since, nothing after: its tombstone again
            "back": (1, 48),  # a state from events after the erasure: written again
            "held": (1, 48), "other": (1, 3),  # held: flushed now; another partition's: not comparable
            "newer": (1, 12),  # newer than this worker's: its own next state lands after it
            "unknown": (1, 3),  # nothing of theirs here
            "gone2": (1, 55),  # after the erasure: this worker writes theirs when it gets there
            "undecodable": None}
    assert asyncio.run(pipeline.write_again(1, late)) == 4
    me = writer_header(pipeline.model.writer)
    assert sends[0] == ("users", b'"gone"', None, 1, [erasure_header(1, 50), me])
    assert sorted(sends[1:]) == [("users", b'"back"', 60, 1, [me]), ("users", b'"held"', 70, 1, [me]),
                                 ("users", b'"other"', 9, 1, [me])]
    assert pipeline._states[1] == {} and table["held"]["o"] == 70 and "gone" not in table


def test_recommendation_slots_count_when_redis_takes_the_payloads_held_ones_included():
    model = WorkerModel(MFConfig(dim=4))
    model.mf.add_items(["i1", "i2"])
    publisher = Publisher(failures=2)
    pipeline = EventPipeline(model, {}, None, None, None, None, DLQ, publisher, "v", barrier=None,
                             memory_ready=None, redis_retries=2)

    def slots() -> float:
        return metrics.SLOTS.labels("none", "new")._value.get()

    before = slots()
    payload = [{"user_id": "u", "items": [{"item_id": "i1"}, {"item_id": "i2"}]}]
    asyncio.run(pipeline._publish(0, payload))  # both attempts fail: held, not counted
    assert slots() == before
    asyncio.run(pipeline._publish(0, []))  # the partition's next batch writes the held payload
    assert slots() == before + 2


def test_events_of_new_items_past_the_item_cap_are_rejected_and_the_memory_leaves_them_out():
    def event(user: str, item: str, offset: int) -> SimpleNamespace:
        value = json.dumps({"user_id": user, "item_id": item, "event": "click", "ts": 1}).encode()
        return SimpleNamespace(value=value, message=SimpleNamespace(topic="events", partition=0, offset=offset,
                                                                     key=user.encode()))

    model = WorkerModel(MFConfig(dim=4), max_items=3)
    model.mf.add_items(["old"])
    pipeline = EventPipeline(model, {}, None, None, None, None, DLQ, None, "v", barrier=None, memory_ready=None)
    forget = SimpleNamespace(value=json.dumps({"user_id": "u9", "event": "forget", "ts": 1}).encode(),
                             message=SimpleNamespace(topic="events", partition=0, offset=9, key=b"u9"))
    batch = [event("u1", "old", 1), event("u1", "n1", 2), event("u2", "n2", 3), event("u2", "n1", 4),
             event("u3", "n3", 5), forget, event("u3", "old", 6)]
    valid, rejected = pipeline.validate(batch)
    # two places left: n1 (twice) and n2 are admitted, n3 is not; the erasure request has no item
    assert [ev.message.offset for ev, _ in valid] == [1, 2, 3, 4, 9, 6]
    assert [(ev.message.offset, exc.reason) for ev, exc in rejected] == [(5, "item_capacity")]
    assert "POLYREC_MAX_ITEMS=3" in rejected[0][1].detail
    model.mf.add_items(["n1", "n2"])  # as learning the valid ones does
    model.learn_memory(["u1", "u1", "u3"], ["old", "n1", "n3"])  # the replica's view: n3 left out
    assert len(model.mf.items) == 3 and model.mf.items.row("n3") < 0
    assert model.memory.recent(["u3"]).tolist() == [[0] * model.memory.config.context]
