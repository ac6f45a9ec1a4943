"""Faults at each step of a batch (``POLYREC_FAILPOINT``, stream/failpoints.py), under traffic, with
the fault tests' oracles: every user's applied count in the changelog and every item's count on the
item-factor topic equal the events the topic holds, every user's Redis payload is that of their
last event, and every bad record is dead-lettered exactly once (nothing as ``processing_failed``).

* a SIGKILL at each step (then a restart without the failpoint), and one while new items arrive;
* a crash, not a kill, while a batch waits in the middle (an error no step handles, from a timer);
* an eviction: a worker whose batch stalls past the rebalance timeout while another joins, so that
  it is dropped from the group holding a batch and writes late; and the same with users erased
  while it is frozen (its late writes must not bring them back).

All run in ``make faults``."""

import json
import re
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest

from polyrec_cli.harness import event_record, send_records
from stream.recs import recs_key
from stream.wire import TEXT_SOURCE
from tests.support import (
    assert_every_event_applied_once,
    durable_item_counts,
    item,
    latest_item_records,
    metric_value,
    partition_of,
    read_topic,
    run,
    stale_payloads,
    wait_for,
    worker_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.faults]
USERS, ITEMS, RATE = 100, 200, 1_000
TS0 = 1_700_000_000_000
BAD_EVERY = 100  # one record that fails validation per this many


def _stream(n: int) -> list[tuple[str, str] | None]:
    """``n`` records: clicks of users u0.. in turn on items i0.. (None: a bad record)."""
    return [None if k % BAD_EVERY == BAD_EVERY - 1 else (f"u{k % USERS}", f"i{(k * 7) % ITEMS}") for k in range(n)]


def _send(broker: str, env: dict, stream: list, start: int = 0, rate: float | None = RATE) -> None:
    def records():
        for k, pair in enumerate(stream, start):
            if pair is None:
                yield b"u-bad", b'{"user_id": "u-bad", "item_id": "i1", "event": "teleport", "ts": 1}'
            else:
                yield event_record(pair[0], pair[1], "click", ts=TS0 + k)
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], records(), rate=rate, linger_ms=20))


def _sending(broker: str, env: dict, stream: list) -> threading.Thread:
    sender = threading.Thread(target=_send, args=(broker, env, stream), daemon=True)
    sender.start()
    return sender


def _assert_exact(broker: str, env: dict, stream: list, workers_left: list, redis_client) -> None:
    """The oracles, once the workers have drained ``stream``."""
    events = [pair for pair in stream if pair is not None]
    assert_every_event_applied_once(broker, env, Counter(u for u, _ in events), workers_left)
    items = Counter(i for _, i in events)
    wait_for(lambda: durable_item_counts(broker, env) == items, 60, interval=1.0,
             what="every item's count on the item-factor topic equal to its events")
    _assert_redis_current(env, stream, redis_client)
    dead = run(read_topic(broker, f"{env['POLYREC_EVENTS_TOPIC']}.dlq"))
    sources = Counter((dict(r.headers)["polyrec-source-partition"], dict(r.headers)["polyrec-source-offset"])
                      for r in dead)
    reasons = Counter(dict(r.headers)["polyrec-reason"].decode() for r in dead)
    assert reasons.get("processing_failed", 0) == 0, reasons
    assert len(sources) == stream.count(None), f"{len(sources)} bad records dead-lettered of {stream.count(None)}"
    doubled = {k: n for k, n in sources.items() if n > 1}
    assert not doubled, f"{len(doubled)} bad records dead-lettered more than once: {list(doubled.items())[:5]}"


def _last_ts(stream: list) -> dict[str, int]:
    return {pair[0]: TS0 + k for k, pair in enumerate(stream) if pair is not None}


def _assert_redis_current(env: dict, stream: list, redis_client) -> None:
    stale = stale_payloads(redis_client, env["POLYREC_REDIS_PREFIX"], _last_ts(stream))
    assert not stale, f"{len(stale)} users' Redis payloads are not of their last event: {list(stale.items())[:5]}"


def _log_lines(worker, pattern: str) -> list[str]:
    return [line for line in worker.log.read_text(errors="replace").splitlines() if re.search(pattern, line)]


# the pass of each step the kill comes at: under 1,000 events/s a batch holds tens of events, and a
# commit (with its flush) comes every 3 s
KILLS = {"batch.before_learn": 20, "dlq.after_send": 5, "batch.in_topk": 20, "batch.after_publish": 20,
         "batch.before_ack": 20, "flush.after_send": 2, "commit.after_flush": 2}


# every step on the memory store; on RocksDB (which recovers from the offset the flush records) the
# steps around the flush
@pytest.mark.parametrize("step, store", [(step, "memory://") for step in KILLS]
                         + [("flush.after_send", "rocksdb://"), ("commit.after_flush", "rocksdb://")])
def test_a_sigkill_at_each_step_neither_loses_nor_doubles_an_event(step, store, broker, tmp_path, workers,
                                                                  redis_client):
    stream = _stream(6_000)
    env = worker_env(broker, tmp_path, POLYREC_ITEMS_AGENT="0", POLYREC_STORE=store)
    w = workers.new(env | {"POLYREC_FAILPOINT": f"{step}:{KILLS[step]}:kill"})
    w.wait_ready()
    sender = _sending(broker, env, stream)
    wait_for(lambda: w.proc.poll() is not None, 60, what=f"the kill at {step}")
    assert w.proc.returncode == -signal.SIGKILL
    assert sender.is_alive(), "every event was sent before the kill: not under traffic"
    w = workers.new(env)
    w.wait_ready()
    sender.join()
    _assert_exact(broker, env, stream, [w], redis_client)


def test_a_sigkill_while_new_items_arrive_loses_no_item_and_dead_letters_none_twice(broker, tmp_path, workers):
    """The items agent (the encoder) on: 300 new items, one in 30 with no text, at 50 a second; a
    SIGKILL when its 5th batch is encoded and shared but not acknowledged. Once restarted, every valid
    item has its text record on the item-factor topic, and every bad one is dead-lettered once.
    (The items were a Faust agent's until 2026-12-07, outside the in-order check and the re-read
    after Faust clears its buffers: a restart could leave items never encoded.)"""
    names = [f"item{k}" for k in range(300)]
    bad = set(names[29::30])
    env = worker_env(broker, tmp_path)
    w = workers.new(env | {"POLYREC_FAILPOINT": "batch.before_ack:5:kill"})
    w.wait_ready(120)
    records = [item(n, "" if n in bad else f"A story about the number {k}") for k, n in enumerate(names)]
    sender = threading.Thread(target=lambda: run(send_records(broker, env["POLYREC_ITEMS_TOPIC"], records, rate=50)),
                              daemon=True)
    sender.start()
    wait_for(lambda: w.proc.poll() is not None, 60, what="the kill")
    assert w.proc.returncode == -signal.SIGKILL
    assert sender.is_alive(), "every item was sent before the kill: not under traffic"
    w = workers.new(env)
    w.wait_ready(120)
    sender.join()
    valid = set(names) - bad
    wait_for(lambda: {r.item_id for r in latest_item_records(broker, env) if r.source == TEXT_SOURCE} == valid, 120,
             interval=1.0, what="every valid item's text record")
    dead = run(read_topic(broker, f"{env['POLYREC_ITEMS_TOPIC']}.dlq"))
    assert sorted(r.key.decode() for r in dead) == sorted(bad)


def test_a_crash_while_a_batch_waits_in_the_middle_neither_loses_nor_doubles_an_event(broker, tmp_path, workers,
                                                                                      redis_client):
    """A batch stops for 20 s between learning and publishing; meanwhile a timer raises, which crashes
    the worker (Faust's crash path: the other services stop and the consumer commits on its way out,
    while the batch is cancelled). What that commit covers must be in the changelog; the restarted
    worker learns the rest."""
    stream = _stream(25_000)  # 25 s: still sending when the crash comes
    env = worker_env(broker, tmp_path, POLYREC_ITEMS_AGENT="0")
    # timer.tick: every 5 s from the worker's start (ready): the 3rd comes 15 s after it, while the
    # 5th batch (a second or two after the events begin) waits its 25 s
    w = workers.new(env | {"POLYREC_FAILPOINT": "batch.in_topk:5:sleep=25,timer.tick:3:raise"})
    w.wait_ready()
    sender = _sending(broker, env, stream)
    wait_for(lambda: w.proc.poll() is not None, 60, what="the crash")
    order = [m.group(1) for m in re.finditer(r"\] failpoint (\S+) \(pass \d+\)", w.log.read_text(errors="replace"))]
    assert order == ["batch.in_topk", "timer.tick"], f"the crash did not come while the batch waited: {order}"
    assert sender.is_alive(), "every event was sent before the crash: not under traffic"
    w = workers.new(env)
    w.wait_ready()
    sender.join()
    _assert_exact(broker, env, stream, [w], redis_client)


def test_an_evicted_worker_s_late_writes_lose_to_its_successor(broker, tmp_path, workers, redis_client):
    """The first worker holds a batch (learned and published, not flushed) and freezes (SIGSTOP)
    while a second worker joins: its heartbeats stop, the group drops it after the session timeout,
    and the second takes every partition and drains the stream. Thawed, the first finishes its batch
    and writes its states and payloads late, after the successor's final ones. Every payload must
    stay the successor's, and every user's last changelog record become their newest state again
    (what compaction keeps: the successor writes it again). Back in the group, the first (with a
    RocksDB store) gets partitions again: one more event per user must land on exactly the count of
    their events. Then both stop, and a third worker recovers every user from the changelog: one
    more event per user, again exact.

    (A batch that only sleeps past the rebalance timeout does not get its worker evicted on Tansu:
    the broker waits for the member to rejoin, 2026-12-07.)"""
    stream = _stream(30_000)  # 30 s: still sending when the second worker has taken over
    env = worker_env(broker, tmp_path, POLYREC_ITEMS_AGENT="0")
    first = workers.new(env | {"POLYREC_FAILPOINT": "batch.after_publish:30:sleep=20", "POLYREC_STORE": "rocksdb://"})
    first.wait_ready()
    sender = _sending(broker, env, stream)
    wait_for(lambda: _log_lines(first, r"failpoint batch\.after_publish"), 60, what="the batch held")
    written = metric_value(first.metrics(), "polyrec_user_states_written_total")
    first.proc.send_signal(signal.SIGSTOP)
    counts = Counter(pair[0] for pair in stream if pair is not None)
    try:
        second = workers.new(env | {"POLYREC_DATA_DIR": str(tmp_path / "second")})
        second.wait_ready()
        wait_for(lambda: second.assigned() == {0, 1, 2, 3}, 60, what="the second worker holding every partition")
        assert sender.is_alive(), "every event was sent before the eviction: not under traffic"
        sender.join()
        wait_for(lambda: {u: states[-1][1] for u, states in _changelog(broker, env).items()} == counts, 90,
                 interval=1.0, what="the successor's final states on the changelog")
    finally:
        first.proc.send_signal(signal.SIGCONT)
    # its batch ends, and it writes the states it held: after its successor's final ones
    wait_for(lambda: metric_value(first.metrics(), "polyrec_user_states_written_total") > written, 60,
             what="the evicted worker's late states")
    wait_for(lambda: any(s[1] < counts[u] for u, states in _changelog(broker, env).items() for s in states[-3:]),
             30, what="a late state on the changelog")
    # the successor's payloads stand: the late ones were older (stream/recs.py refuses them)
    try:
        wait_for(lambda: not stale_payloads(redis_client, env["POLYREC_REDIS_PREFIX"], _last_ts(stream)), 120,
                 what="every payload current")
    finally:
        _assert_redis_current(env, stream, redis_client)  # says which are not
    try:  # compaction keeps each user's last record: it must be their newest state again
        wait_for(lambda: all(states[-1][1] == counts[u] for u, states in _changelog(broker, env).items()), 30,
                 interval=1.0, what="every user's last changelog record their newest state again")
    finally:
        behind = {u: states[-3:] for u, states in _changelog(broker, env).items() if states[-1][1] != counts[u]}
        assert not behind, (f"{len(behind)} users' last changelog record is not their newest state: "
                            f"{list(behind.items())[:5]}")
    # back in the group, the first gets partitions again, its RocksDB store holding its late states:
    # its recovery must read the successor's newer ones too, or its users' next events land on old counts
    wait_for(lambda: first.assigned() and second.assigned(), 60, what="both workers holding partitions")
    touches = [(f"u{k}", "i0") for k in range(USERS)]
    _send(broker, env, touches, start=len(stream), rate=None)
    assert_every_event_applied_once(broker, env, counts + Counter(u for u, _ in touches), [first, second])
    first.stop()
    assert second.stop() == 0
    third = workers.new(env | {"POLYREC_DATA_DIR": str(tmp_path / "third")})
    third.wait_ready()
    more = [(f"u{k}", "i1") for k in range(USERS)]
    _send(broker, env, more, start=len(stream) + len(touches), rate=None)
    _assert_exact(broker, env, stream + touches + more, [third], redis_client)


def _changelog(broker: str, env: dict) -> dict[str, list[tuple[int, int]]]:
    """Each user's states on the users changelog, in order: (offset, events applied)."""
    out: dict[str, list[tuple[int, int]]] = {}
    for r in run(read_topic(broker, f"{env['POLYREC_APP_ID']}-users-changelog", timeout=30)):
        if r.value is not None:
            state = json.loads(r.value)
            out.setdefault(json.loads(r.key), []).append((state["o"], state["n"]))
    return out


def _erase(env: dict, user: str) -> dict:
    done = subprocess.run([sys.executable, "-m", "polyrec_cli", "forget", user, "--timeout", "60"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _after_erasure(broker: str, env: dict, users: set[str]) -> dict[str, list]:
    """Each user's changelog records from their first tombstone on: (state offset, or None for a
    tombstone)."""
    out: dict[str, list] = {}
    for r in run(read_topic(broker, f"{env['POLYREC_APP_ID']}-users-changelog", timeout=30)):
        user = json.loads(r.key)
        if user in out:
            out[user].append(None if r.value is None else json.loads(r.value)["o"])
        elif user in users and r.value is None:
            out[user] = [None]
    return out


def test_an_erased_user_does_not_come_back_from_an_evicted_worker_s_late_writes(broker, tmp_path, workers,
                                                                              redis_client):
    """As the eviction above, but the first worker freezes before its batch's payloads are written,
    and while it is frozen its successor erases 8 users (``polyrec forget``, two per partition).
    Thawed, the first writes payloads and states of theirs learned before the erasure. Redis must
    not take the payloads (the erasure marker); the successor, which watches its partitions of the
    changelog, writes their tombstones again after the late states (or, if the first took a partition
    back meanwhile, the first does at its recovery), and a third worker that recovers from the
    changelog must not bring the users back (the tombstone's erasure position); one more event per
    user then lands on 1 for the erased users, on exactly the count of their events for the others."""
    stream = _stream(30_000)
    env = worker_env(broker, tmp_path, POLYREC_ITEMS_AGENT="0")
    first = workers.new(env | {"POLYREC_FAILPOINT": "batch.in_topk:30:sleep=20"})
    first.wait_ready()
    sender = _sending(broker, env, stream)
    wait_for(lambda: _log_lines(first, r"failpoint batch\.in_topk"), 60, what="the batch held")
    metrics_before = first.metrics()
    first.proc.send_signal(signal.SIGSTOP)
    erased = {u for p in range(4) for u in [f"u{k}" for k in range(USERS) if partition_of(f"u{k}", 4) == p][:2]}
    try:
        second = workers.new(env)
        second.wait_ready()
        wait_for(lambda: second.assigned() == {0, 1, 2, 3}, 60, what="the second worker holding every partition")
        assert sender.is_alive(), "every event was sent before the eviction: not under traffic"
        sender.join()
        reports = [_erase(env, u) for u in sorted(erased)]
        assert all(r["applied"] for r in reports), reports
    finally:
        first.proc.send_signal(signal.SIGCONT)
    for name in ("polyrec_user_states_written_total", "polyrec_recommendations_stale_total"):
        wait_for(lambda name=name: metric_value(first.metrics(), name) > metric_value(metrics_before, name), 60,
                 what=f"the evicted worker's late writes ({name})")
    back = [u for u, raw in zip(sorted(erased), redis_client.mget([recs_key(env["POLYREC_REDIS_PREFIX"], u)
                                                                     for u in sorted(erased)])) if raw]
    assert not back, f"erased users' recommendations back in Redis after the late writes: {back}"
    late = {u: [o for o in after if o is not None and o < reports[sorted(erased).index(u)]["offset"]]
            for u, after in _after_erasure(broker, env, erased).items()}
    late = {u: offsets for u, offsets in late.items() if offsets}
    assert late, "no late state of an erased user followed their tombstone: the test did not evict as meant"
    wait_for(lambda: all(after[-1] is None for u, after in _after_erasure(broker, env, set(late)).items()), 30,
             what="the erased users' tombstones written again after their late states, by a running owner")
    assert any(_log_lines(w, r"wrote again \d+ states and [1-9]\d* erased users' tombstones") for w in (first, second))
    first.stop()
    assert second.stop() == 0
    third = workers.new(env | {"POLYREC_DATA_DIR": str(tmp_path / "third")})
    third.wait_ready()
    wait_for(lambda: all(after[-1] is None for u, after in _after_erasure(broker, env, set(late)).items()), 60,
             what="the erased users' last records still tombstones after the third worker's recovery")
    touches = [(f"u{k}", "i0") for k in range(USERS)]
    _send(broker, env, touches, start=len(stream), rate=None)
    counts = Counter(u for u, _ in [pair for pair in stream if pair is not None] + touches)
    assert_every_event_applied_once(broker, env, Counter({**counts, **{u: 1 for u in erased}}), [third])
    wait_for(lambda: not stale_payloads(redis_client, env["POLYREC_REDIS_PREFIX"],
                                        {u: TS0 + len(stream) + k for k, (u, _) in enumerate(touches)}), 60,
             what="every user's payload that of their touch")
