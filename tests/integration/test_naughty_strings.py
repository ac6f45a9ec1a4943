"""The Big List of Naughty Strings through a live worker, as user ids and as item ids: every record
is either learned and published under exactly its id, or dead-lettered as ``invalid_id``, and the
worker stays up. The oracle (``tests.support.valid_id``) is docs/contracts.md's rule, not the
worker's code."""

import json
import time

import pytest

from polyrec_cli.harness import get_json, send_records
from stream.recs import recs_key
from tests.support import metric_value, naughty_strings, read_topic, run, valid_id, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ITEM, USER = "naughty-item", "naughty-user"


def _record(user: str, item: str) -> tuple[bytes, bytes]:
    body = {"user_id": user, "item_id": item, "event": "view", "ts": int(time.time() * 1000)}
    return user.encode("utf-8", "surrogatepass"), json.dumps(body).encode()  # \\u escapes: any str travels


def test_naughty_strings_as_ids_are_learned_under_exactly_that_id_or_dead_lettered(broker, tmp_path, workers,
                                                                                     redis_client):
    strings = naughty_strings()
    assert len(strings) > 400, "the corpus came back short"
    good = [s for s in strings if valid_id(s)]
    bad = [s for s in strings if not valid_id(s)]
    assert good and bad
    env = worker_env(broker, tmp_path)
    w = workers.new(env)
    w.wait_ready()
    # as user ids (each user one event), then as the items of one user
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"],
                     [_record(s, ITEM) for s in strings] + [_record(USER, s) for s in strings]))
    expected = 2 * len(good)
    wait_for(lambda: metric_value(w.metrics(), "polyrec_events_total", outcome="applied") >= expected
             and metric_value(w.metrics(), "polyrec_dlq_records_total") >= 2 * len(bad), 60,
             what="every naughty record applied or dead-lettered")
    text = w.metrics()
    assert metric_value(text, "polyrec_events_total", outcome="applied") == expected
    assert metric_value(text, "polyrec_dlq_records_total") == metric_value(
        text, "polyrec_dlq_records_total", reason="invalid_id") == 2 * len(bad)
    dlq = run(read_topic(broker, f"{env['POLYREC_EVENTS_TOPIC']}.dlq"))
    refused = sorted(json.loads(r.value)["user_id" if r.key != USER.encode() else "item_id"] for r in dlq)
    assert refused == sorted(bad + bad)
    prefix = env["POLYREC_REDIS_PREFIX"]

    def published(user: str) -> dict | None:
        raw = redis_client.get(recs_key(prefix, user))
        return None if raw is None else json.loads(raw)

    wait_for(lambda: all(published(s) for s in good), 30, what="recommendations for every valid naughty user")
    for s in good:
        assert published(s)["user_id"] == s, repr(s)
    for s in bad:
        assert published(s) is None, repr(s)
    history = get_json(w.url(f"/polyrec/users/{USER}"))[1]["history"]
    assert sorted(history) == sorted(good)
    w.check()
