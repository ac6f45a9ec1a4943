"""The worker's Redis client against a Redis of its own that hangs (SIGSTOP) and dies: every write
gives up within POLYREC_REDIS_TIMEOUT_S, and writes work again once Redis is back, on the same client."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import redis

from polyrec_cli.devservers import ensure_redis, free_port
from stream.recs import RecsPublisher, payload, recs_key, redis_client

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.3


async def _timed_publish(publisher: RecsPublisher, user: str) -> tuple[float, BaseException | None]:
    """Seconds one publish took, and what it raised (None if it succeeded); at most 10 s."""
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(publisher.publish([payload(user, [], [], "v", 0.0, 0, 0)]), 10)
    except (TimeoutError, redis.RedisError, OSError) as exc:
        return time.perf_counter() - t0, exc
    return time.perf_counter() - t0, None


def test_a_hung_or_dead_redis_costs_a_write_one_timeout_and_the_client_recovers():
    url = f"redis://127.0.0.1:{free_port()}/0"
    server = ensure_redis(url)
    check = redis.Redis.from_url(url)

    async def scenario() -> None:
        nonlocal server
        client = redis_client(url, TIMEOUT_S)
        publisher = RecsPublisher(client, "outage", ttl_s=60, maxlen=100)
        try:
            took, error = await _timed_publish(publisher, "before")
            assert error is None and check.exists(recs_key("outage", "before"))

            os.kill(server.proc.pid, signal.SIGSTOP)  # hung: the socket stays open, nothing answers
            try:
                took, error = await _timed_publish(publisher, "hung")
            finally:
                os.kill(server.proc.pid, signal.SIGCONT)
            assert isinstance(error, redis.TimeoutError), error
            assert took < TIMEOUT_S + 0.5, f"a hung Redis held one write {took:.2f} s (timeout {TIMEOUT_S} s)"

            took, error = await _timed_publish(publisher, "after-hang")
            assert error is None and check.exists(recs_key("outage", "after-hang"))

            server.stop()  # dead: connections refused
            took, error = await _timed_publish(publisher, "dead")
            assert isinstance(error, redis.ConnectionError), error
            assert took < TIMEOUT_S + 0.5, f"a dead Redis held one write {took:.2f} s"

            server = ensure_redis(url)  # a fresh, empty Redis on the same port: the same client writes again
            took, error = await _timed_publish(publisher, "back")
            assert error is None and check.exists(recs_key("outage", "back")), error
        finally:
            await client.aclose()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_a_worker_writes_what_it_learned_while_redis_was_down_once_redis_is_back(broker, workers, tmp_path):
    """A user whose only event came while Redis was down gets its recommendations once a Redis is back
    and the partition's next batch runs (held, not dropped). Redis is killed and a fresh one started:
    a hung one that resumes would run the writes queued in its socket and hide the difference."""
    from polyrec_cli.harness import event_record, send_records
    from stream.settings import Settings
    from tests.support import metric_value, run, wait_for, worker_env

    url = f"redis://127.0.0.1:{free_port()}/0"
    server = ensure_redis(url)
    try:
        check = redis.Redis.from_url(url)
        env = worker_env(broker, tmp_path, REDIS_URL=url, POLYREC_PARTITIONS="1")
        settings = Settings.from_env(env)
        worker = workers.new(env)
        worker.wait_ready(90)

        def send(user: str, item: str) -> None:
            run(send_records(broker, settings.events_topic, [event_record(user, item)]))

        def written(user: str) -> bool:
            return bool(check.exists(recs_key(settings.redis_prefix, user)))

        send("before", "i1")
        wait_for(lambda: written("before"), 60, what="the first user's recommendations")
        server.stop()
        send("during", "i2")
        wait_for(lambda: metric_value(worker.metrics(), "polyrec_recommendations_held") >= 1, 60,
                 what="the worker holding the payload Redis did not take")
        server = ensure_redis(url)  # back, empty: what it holds of "during" was written after it started
        # (by the partition's next batch, or by the worker's retry of held payloads every HELD_RETRY_S,
        # whichever comes first: checking that it is not there yet raced with the retry)
        send("after", "i3")
        wait_for(lambda: written("after") and written("during"), 60, what="the held payload written")
        assert metric_value(worker.metrics(), "polyrec_recommendations_held") == 0
        assert metric_value(worker.metrics(), "polyrec_recommendations_dropped_total") == 0
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize("fault, seconds", [("killed", 65), ("hung", 65), ("killed", 35)])
def test_redis_killed_or_hung_for_60_s_under_traffic(fault, seconds, broker, workers, tmp_path):
    """500 events/s for 65 s (or 35 s: the traffic stops half-way through the outage, so no later
    batch writes what was held); Redis fails after 5 s and comes back 60 s later (killed: a fresh,
    empty one; hung: SIGSTOP, then SIGCONT). The worker stays up and keeps learning, no batch takes
    more than 10 s, the lag is 0 within 30 s of Redis's return, and every user with an event since
    the outage began (hung: every user) has, in Redis, the payload of their last event."""
    import random
    import threading

    from polyrec_cli.harness import event_record, send_records
    from stream.settings import Settings
    from tests.support import metric_value, run, stale_payloads, wait_for, worker_env

    url = f"redis://127.0.0.1:{free_port()}/0"
    server = ensure_redis(url)
    rate, users = 500, 300
    rng = random.Random(17)
    stream = [(f"u{rng.randrange(users)}", f"i{rng.randrange(400)}") for _ in range(rate * seconds)]
    try:
        env = worker_env(broker, tmp_path, REDIS_URL=url, POLYREC_ITEMS_AGENT="0")
        settings = Settings.from_env(env)
        worker = workers.new(env)
        worker.wait_ready(90)
        sent_at: dict[str, tuple[int, float]] = {}  # user -> (their last event's ts, when it was sent)

        def records():
            for k, (user, item) in enumerate(stream):
                sent_at[user] = (1_700_000_000_000 + k, time.monotonic())
                yield event_record(user, item, "click", ts=1_700_000_000_000 + k)

        producer = threading.Thread(target=lambda: run(send_records(broker, settings.events_topic, records(),
                                                                    rate=rate)))
        producer.start()
        time.sleep(5)
        began = time.monotonic()
        if fault == "killed":
            server.stop()
        else:
            os.kill(server.proc.pid, signal.SIGSTOP)
        time.sleep(60)
        worker.check()
        learned = metric_value(worker.metrics(), "polyrec_events_total")
        assert learned > 0.5 * rate * (seconds - 5), f"the worker stopped learning in the outage ({learned:.0f} events)"
        if fault == "killed":
            server = ensure_redis(url)
        else:
            os.kill(server.proc.pid, signal.SIGCONT)
        back = time.monotonic()
        producer.join(60)
        wait_for(lambda: metric_value(worker.metrics(), "polyrec_events_total") >= len(stream)
                 and metric_value(worker.metrics(), "polyrec_consumer_lag_records") == 0, back + 30 - time.monotonic(),
                 what="lag 0 within 30 s of Redis's return")
        check = redis.Redis.from_url(url)
        touched = sorted(u for u, (_, at) in sent_at.items() if fault == "hung" or at >= began)
        assert len(touched) > users * 0.9

        def current() -> dict[str, int | None]:
            return stale_payloads(check, settings.redis_prefix, {u: sent_at[u][0] for u in touched})

        stale = current()
        try:
            wait_for(lambda: not current(), max(1.0, back + 30 - time.monotonic()), what="every payload rebuilt")
        except AssertionError:
            raise AssertionError(f"{len(current())} of {len(touched)} users' payloads are missing or stale 30 s "
                                 f"after Redis's return (at the lag check: {len(stale)})") from None
        text = worker.metrics()
        slow = (metric_value(text, "polyrec_batch_duration_seconds_count")
                - metric_value(text, "polyrec_batch_duration_seconds_bucket", le="10.0"))
        assert slow == 0, f"{slow:.0f} batches took more than 10 s"
        worker.check()
    finally:
        if server.proc is not None and server.proc.poll() is None:
            os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.slow
@pytest.mark.faults
def test_a_rebalance_during_a_redis_outage_neither_loses_an_event_nor_leaves_a_payload_stale(broker, workers,
                                                                                            tmp_path):
    """Redis is killed while a worker learns 500 events/s; 20 s into the 40 s outage a second worker
    joins, so partitions move while both hold payloads Redis did not take. A fresh, empty Redis comes
    back. Fifty quiet users have events only early in the outage, before the rebalance: once both
    workers drain, each one's payload in Redis is that of their last event (no later event of theirs
    lets the next owner write it; the hand-over used to drop it). Then both workers stop and a third
    recovers every user from the changelog: a touch event per user must land on exactly their count
    (nothing the moved partitions held was lost or learned twice), and every user's payload in Redis
    is that of their touch."""
    import random
    import threading
    from collections import Counter

    from polyrec_cli.harness import event_record, send_records
    from tests.support import assert_every_event_applied_once, metric_value, run, stale_payloads, wait_for, worker_env

    url = f"redis://127.0.0.1:{free_port()}/0"
    server = ensure_redis(url)
    rate, users, seconds = 500, 200, 50
    rng = random.Random(23)
    stream = [(f"u{rng.randrange(users)}", f"i{rng.randrange(300)}") for _ in range(rate * seconds)]
    quiet = [f"q{k}" for k in range(50)]
    for k, user in enumerate(quiet * 2):  # two events each, 8-14 s after the start (Redis down at 5 s)
        stream[rate * 8 + 30 * k] = (user, f"i{rng.randrange(300)}")
    ts = {u: 1_700_000_000_000 + k for k, (u, _) in enumerate(stream)}  # each user's last event's ts
    try:
        env = worker_env(broker, tmp_path, REDIS_URL=url, POLYREC_ITEMS_AGENT="0")
        first = workers.new(env)
        first.wait_ready(90)
        producer = threading.Thread(target=lambda: run(send_records(
            broker, env["POLYREC_EVENTS_TOPIC"],
            (event_record(u, i, "click", ts=1_700_000_000_000 + k) for k, (u, i) in enumerate(stream)), rate=rate)))
        producer.start()
        time.sleep(5)
        server.stop()
        down = time.monotonic()
        time.sleep(20)
        second = workers.new(env)
        second.wait_ready(90)  # ready needs no Redis: its batches hold their payloads
        wait_for(lambda: len(second.assigned()) == 2, 60, what="the partitions split between the two")
        assert metric_value(first.metrics(), "polyrec_recommendations_held") > 0, "nothing held: not an outage"
        time.sleep(max(0.0, down + 40 - time.monotonic()))
        server = ensure_redis(url)
        producer.join(60)
        wait_for(lambda: sum(metric_value(w.metrics(), "polyrec_consumer_lag_records") for w in (first, second)) == 0
                 and sum(metric_value(w.metrics(), "polyrec_recommendations_held") for w in (first, second)) == 0,
                 60, what="both drained, nothing held")
        check = redis.Redis.from_url(url)
        prefix = env["POLYREC_REDIS_PREFIX"]
        lost = stale_payloads(check, prefix, {u: ts[u] for u in quiet})
        assert not lost, f"{len(lost)} of {len(quiet)} quiet users' payloads missing or stale: {list(lost.items())[:5]}"
        assert first.stop() == 0 and second.stop() == 0
        third = workers.new(env | {"POLYREC_DATA_DIR": str(tmp_path / "third")})
        third.wait_ready(90)
        touches = [(f"u{k}", "i0") for k in range(users)]
        base = len(stream)
        run(send_records(broker, env["POLYREC_EVENTS_TOPIC"],
                         (event_record(u, i, "click", ts=1_700_000_000_000 + base + k)
                          for k, (u, i) in enumerate(touches))))
        assert_every_event_applied_once(broker, env, Counter(u for u, _ in stream + touches), [third])

        touched_at = {u: 1_700_000_000_000 + base + k for k, (u, _) in enumerate(touches)}
        wait_for(lambda: not stale_payloads(check, prefix, touched_at), 30,
                 what="every user's payload that of their touch")
    finally:
        server.stop()
