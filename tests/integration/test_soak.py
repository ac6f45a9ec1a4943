"""Soak (``make soak``, about 12 minutes): 400 events/s for 10 minutes, faults in the first half,
measurements in the second.

First half: the worker is SIGKILLed and restarted (30 s), Redis is killed and a fresh one started
(90 s), a second worker joins (150 s) and leaves (210 s), the broker is cut for 20 s through a TCP
proxy (240 s). Second half, sampled every 10 s: the worker's RSS, its consumer lag and the
freshness histogram. Then the oracle of the fault tests: every user's applied count in the
changelog equals the events the topic holds for them.

Budgets (docs/operations.md, "Soak"): with a catalogue and user base that stop growing after the
first minute, the RSS slope over the last 5 minutes stays under 2 MB a minute (memory grows with new
items and users, and nothing new arrives then), the lag under 10 s of traffic, and freshness p99
under 2 s.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter

import numpy as np
import pytest

from polyrec_cli.devservers import ensure_redis, free_port
from polyrec_cli.harness import event_record, send_records
from tests.support import assert_every_event_applied_once, metric_value, rss_mb, run, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.soak]
RATE, SECONDS, HALF = 400, 600, 300
USERS, ITEMS = 2_000, 1_000
FRESHNESS_LE = ("0.01", "0.025", "0.05", "0.1", "0.2", "0.3", "0.5", "0.75", "1.0", "2.0", "5.0", "10.0", "30.0")


def _freshness(text: str) -> np.ndarray:
    """The freshness histogram's cumulative counts, by bucket (``FRESHNESS_LE``, then +Inf)."""
    return np.array([metric_value(text, "polyrec_freshness_seconds_bucket", le=le) for le in FRESHNESS_LE]
                    + [metric_value(text, "polyrec_freshness_seconds_count")])


@pytest.mark.timeout(1200)
def test_ten_minutes_with_faults_in_the_first_half(proxied_broker, tmp_path, workers):
    proxy, broker = proxied_broker
    url = f"redis://127.0.0.1:{free_port()}/0"
    redis_server = ensure_redis(url)
    env = worker_env(broker, tmp_path, REDIS_URL=url, POLYREC_ITEMS_AGENT="0")
    rng = random.Random(23)
    stream = [(f"u{rng.randrange(USERS)}", f"i{rng.randrange(ITEMS)}") for _ in range(RATE * SECONDS)]
    expected = Counter(user for user, _ in stream)
    w = workers.new(env)
    w.wait_ready()
    producer = threading.Thread(target=lambda: run(send_records(
        broker, env["POLYREC_EVENTS_TOPIC"], (event_record(u, i, "view") for u, i in stream), rate=RATE)))
    started = time.monotonic()
    producer.start()

    def at(second: float) -> None:
        time.sleep(max(0.0, started + second - time.monotonic()))

    try:
        at(30)
        w.stop(signal.SIGKILL)
        w = workers.new(env)
        w.wait_ready()
        at(90)
        redis_server.stop()
        redis_server = ensure_redis(url)
        at(150)
        second = workers.new(env)
        second.wait_ready()
        at(210)
        assert second.stop() == 0
        at(240)
        proxy.cut()
        at(260)
        proxy.restore()
        at(HALF)
        w.check()
        fresh_start = _freshness(w.metrics())
        samples = []  # (seconds, RSS MB, lag)
        while time.monotonic() < started + SECONDS:
            samples.append((time.monotonic() - started, rss_mb(w.proc.pid),
                            metric_value(w.metrics(), "polyrec_consumer_lag_records")))
            time.sleep(10)
        fresh = _freshness(w.metrics()) - fresh_start
        producer.join(120)
        assert not producer.is_alive(), "the producer did not finish"
        assert_every_event_applied_once(broker, env, expected, [w])
        t, rss, lag = (np.array(x) for x in zip(*samples))
        slope = np.polyfit(t / 60, rss, 1)[0]
        p99 = next((le for le, n in zip((*FRESHNESS_LE, "+Inf"), fresh) if n >= 0.99 * fresh[-1]), "+Inf")
        report = (f"RSS {rss.min():.0f}-{rss.max():.0f} MB, slope {slope:+.2f} MB/min; lag max {lag.max():.0f}; "
                  f"freshness p99 <= {p99} s over {fresh[-1]:.0f} events")
        print(report)
        assert slope < 2.0, report
        assert lag.max() < 10 * RATE, report
        assert p99 != "+Inf" and float(p99) <= 2.0, report
        w.check()
    finally:
        redis_server.stop()
