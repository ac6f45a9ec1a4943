"""The framework ceiling: a no-op Faust agent over ``stream.take`` (JSON decoding only).

Run as ``python bench/noop_faust.py`` with KAFKA_BOOTSTRAP, BENCH_APP_ID, BENCH_TOPIC and
BENCH_METRICS_PORT set; it counts events on a Prometheus counter named like polyrec's. Its Faust
process is set up as a polyrec worker's: the same event loop (``POLYREC_EVENT_LOOP``), no terminal
spinner, no Monitor sensor.
"""

import json
import os

import faust
from prometheus_client import Counter, start_http_server

from stream.faust_process import drop_monitor, quiet_worker, use_event_loop
from stream.settings import Settings

use_event_loop(Settings.from_env().event_loop)  # before the app exists, as in polyrec_cli/worker.py

EVENTS = Counter("polyrec_events_total", "Events consumed by the no-op agent.", ["type", "outcome"])

app = faust.App(
    os.environ["BENCH_APP_ID"], broker=f"kafka://{os.environ['KAFKA_BOOTSTRAP']}", web_enabled=False,
    broker_rebalance_timeout=4, broker_session_timeout=6, broker_heartbeat_interval=1,
    topic_replication_factor=1, datadir=os.environ.get("BENCH_DATA_DIR", "/tmp/polyrec-bench-noop"),
    value_serializer="raw", key_serializer="raw",
)
topic = app.topic(os.environ["BENCH_TOPIC"])
counter = EVENTS.labels("any", "applied")
drop_monitor(app)


@app.agent(topic)
async def noop(stream):
    async for values in stream.take(1000, within=0.1):
        for v in values:
            json.loads(v)
        counter.inc(len(values))


if __name__ == "__main__":
    start_http_server(int(os.environ["BENCH_METRICS_PORT"]))
    quiet_worker(app, "warn").execute_from_commandline()
