"""What a worker's web port serves by default: health and readiness, no user state (neither polyrec's
debugging view nor Faust's table and router views, which would serve factors and histories without
auth)."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from polyrec_cli.harness import event_record, send_records
from stream.recs import recs_key
from stream.settings import Settings
from tests.support import run, wait_for, worker_env

pytestmark = pytest.mark.integration


def status(url: str) -> int:
    """The HTTP status of a GET (Faust answers an unknown path with a text body, not JSON)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_by_default_the_web_port_serves_no_user_state(broker, workers, redis_client, tmp_path):
    env = worker_env(broker, tmp_path, POLYREC_WEB_USER_STATE="false", POLYREC_WEB_BIND="127.0.0.1")
    settings = Settings.from_env(env)
    worker = workers.new(env)
    worker.wait_ready(90)
    run(send_records(broker, settings.events_topic, [event_record("alice", "i1")]))
    wait_for(lambda: redis_client.exists(recs_key(settings.redis_prefix, "alice")), 60, what="alice's recommendations")
    assert status(worker.url("/polyrec/ready")) == 200
    for path in ("/polyrec/users/alice", "/table/users/alice/", "/table/users/", "/router/"):
        assert status(worker.url(path)) == 404, path
