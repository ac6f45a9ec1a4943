"""``polyrec forget`` against a real broker, a real Redis and a worker: nothing of the user is left
in the places polyrec controls, a restart does not bring them back, and a repeat is harmless."""

import json
import subprocess
import sys

import pytest

from polyrec_cli.harness import event_record, get_json, send_records
from stream.recs import recs_key, stream_key
from tests.support import metric_value, read_topic, run, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _forget(env: dict, user: str) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "polyrec_cli", "forget", user, "--timeout", "30"], env=env,
                          capture_output=True, text=True, timeout=90)
    return done.returncode, json.loads(done.stdout or "{}"), done.stderr


def _stream_users(redis_client, prefix: str) -> list[str]:
    return [fields[b"user_id"].decode() for _, fields in redis_client.xrange(stream_key(prefix))]


def _last_changelog_value(broker: str, env: dict, user: str):
    records = [r for r in run(read_topic(broker, f"{env['POLYREC_APP_ID']}-users-changelog"))
               if r.key == json.dumps(user).encode()]
    assert records, f"no changelog record of {user}"
    return records[-1].value


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_forget_erases_a_user_everywhere_survives_a_restart_and_is_safe_to_repeat(store, broker, tmp_path, workers,
                                                                                   redis_client):
    env = worker_env(broker, tmp_path, POLYREC_STORE=store)
    prefix = env["POLYREC_REDIS_PREFIX"]
    w = workers.new(env)
    w.wait_ready()
    events = [event_record("seed", f"item{n}", "view") for n in range(30)]
    events += [event_record(u, f"item{n}") for u, first in (("alice", 0), ("bob", 3)) for n in range(first, first + 6)]
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], events))
    wait_for(lambda: all(redis_client.get(recs_key(prefix, u)) for u in ("alice", "bob")), 20, what="recs of both")
    assert get_json(w.url("/polyrec/users/alice"))[1]["history"] == [f"item{n}" for n in range(6)]
    assert "alice" in _stream_users(redis_client, prefix)

    code, report, err = _forget(env, "alice")
    assert code == 0, err
    assert report["user_id"] == "alice" and report["applied"] and report["stream_entries"] >= 1, report
    # Redis: no key, no stream entry; the other users' untouched
    assert redis_client.get(recs_key(prefix, "alice")) is None
    assert "alice" not in _stream_users(redis_client, prefix) and "bob" in _stream_users(redis_client, prefix)
    assert redis_client.get(recs_key(prefix, "bob")) is not None
    # the worker's store and the changelog: gone, a tombstone
    assert get_json(w.url("/polyrec/users/alice"))[0] == 404
    assert get_json(w.url("/polyrec/users/bob"))[0] == 200
    assert _last_changelog_value(broker, env, "alice") is None
    assert metric_value(w.metrics(), "polyrec_users_forgotten_total") == 1

    # a restart recovers the table from the changelog (the tombstone) and the memory from the events topic
    assert w.stop() == 0
    w = workers.new(env)
    w.wait_ready()
    assert get_json(w.url("/polyrec/users/alice"))[0] == 404
    assert get_json(w.url("/polyrec/users/bob"))[1]["history"] == [f"item{n}" for n in range(3, 9)]

    # a repeat: applied again, nothing left to remove
    code, report, err = _forget(env, "alice")
    assert code == 0, err
    assert report["applied"] and report["recs_keys"] == 0 and report["stream_entries"] == 0, report

    # the user comes back as a new user: no history, factors or context from before
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], [event_record("alice", "item20")]))
    wait_for(lambda: redis_client.get(recs_key(prefix, "alice")), 20, what="alice's recs again")
    assert get_json(w.url("/polyrec/users/alice"))[1]["history"] == ["item20"]


def test_forget_refuses_an_id_the_worker_would_refuse(broker, tmp_path):
    code, _, err = _forget(worker_env(broker, tmp_path), "bad\u202eid")
    assert code == 2 and "control character" in err, err
