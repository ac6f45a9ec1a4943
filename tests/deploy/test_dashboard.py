"""The Grafana dashboard and the suggested alerts against the metrics a worker really exports.

Static: every metric a panel or an alert names is defined in ``stream/metrics.py`` (or is a
standard process/platform metric). Integration: a real Prometheus scrapes a loaded worker, then
evaluates every expression of the dashboard (each must parse and return data) and of the alerts
(each must parse).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml

from polyrec_cli.devservers import free_port
from polyrec_cli.harness import event_record, get_json, send_records
from tests.support import run, wait_for, worker_env

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "polyrec.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
JOB = "polyrec"
# Grafana's built-in variables, as Grafana would expand them for a 1 s scrape interval over a short
# time range (rate windows of at least 4 scrapes), and each dashboard variable: its "All" value,
# or, for single-valued ones, the value this test's setup has.
BUILTINS = {"__rate_interval": "30s", "__interval": "5s", "__range": "5m"}
SINGLE_VALUES = {"job": JOB}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
                "offset", "inf", "nan"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panel_exprs(dash: dict) -> list[tuple[str, str]]:
    """(panel title, expression) for every target of every panel, rows included."""
    out = []
    for panel in dash["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            out.extend((sub["title"], t["expr"]) for t in sub.get("targets", []))
    return out


def alert_exprs() -> list[tuple[str, str]]:
    """(alert name, expression) of every rule in deploy/prometheus/alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def variable_queries(dash: dict) -> list[tuple[str, str, str]]:
    """(variable, selector, label) of every ``label_values(selector, label)`` variable."""
    out = []
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
            assert m, f"variable {var['name']}: unsupported query {query!r}"
            out.append((var["name"], m.group(1), m.group(2)))
    return out


def substitutions(dash: dict) -> dict[str, str]:
    values = dict(BUILTINS)
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            values[var["name"]] = var["allValue"] if var.get("includeAll") else SINGLE_VALUES[var["name"]]
    return values


def expand(expr: str, values: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}``; an unknown variable fails the test."""
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown dashboard variable ${name} in {expr!r}"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside strings, label matchers, ranges,
    grouping clauses, that are not function calls, keywords or numbers."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    tokens = re.findall(r"(?<![\w.])[a-zA-Z_:][\w:]*\b(?!\s*\()", bare)
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def exported_names() -> set[str]:
    """Every sample name the worker's registry can export (stream.metrics plus default collectors)."""
    from prometheus_client import REGISTRY

    import stream.metrics  # noqa: F401  (registers the polyrec_* metrics)

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"],
                "gauge": [""], "summary": ["_sum", "_count", ""]}
    return {family.name + s for family in REGISTRY.collect() for s in suffixes.get(family.type, [""])}


def test_dashboard_and_alerts_use_only_defined_metrics():
    dash = dashboard()
    known = exported_names() | {"up"}  # `up` is Prometheus' own per-target series
    exprs = panel_exprs(dash) + [(f"${v}", sel) for v, sel, _ in variable_queries(dash)] + alert_exprs()
    unknown = {(title, name) for title, expr in exprs for name in metric_names(expr) if name not in known}
    assert not unknown, f"queries use metrics that stream/metrics.py does not define: {sorted(unknown)}"


def test_a_worker_exports_zero_series_for_the_counters_alerts_watch():
    """An alert on ``increase()`` never sees a counter's first scraped value: a series first seen at 1
    (one failed batch) would never fire PolyrecBatchFailures (deploy/prometheus/alerts_test.yml)."""
    from prometheus_client import REGISTRY

    from stream import metrics
    from stream.app import Worker
    from stream.settings import Settings

    tag = uuid.uuid4().hex[:8]
    settings = Settings(app_id=f"zeros-{tag}", events_topic=f"events-{tag}", items_topic=f"items-{tag}",
                        items_agent=False)
    topics, outcomes = (settings.events_topic, settings.items_topic), ("applied", "stale", "invalid")
    metrics.ITEM_RECORDS.clear()  # its series are not per topic: another test's app may have made them

    def values() -> list:
        return ([REGISTRY.get_sample_value("polyrec_batch_failures_total", {"topic": t}) for t in topics]
                + [REGISTRY.get_sample_value("polyrec_item_records_total", {"outcome": o}) for o in outcomes])

    assert values() == [None] * 5
    Worker(settings)
    assert values() == [0.0] * 5


def test_dashboard_structure():
    dash = dashboard()
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in dash["templating"]["list"]}
    assert "DS_PROMETHEUS" in variables
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], f"panel {panel['title']!r} has no query"
    for _, expr in panel_exprs(dash):
        expand(expr, substitutions(dash))  # every variable used is declared


class Prometheus:
    """A real Prometheus server scraping ``targets`` every second, with its tsdb in ``folder``."""

    def __init__(self, folder: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.folder = folder
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: {json.dumps(targets)}\n")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=(folder / "prometheus.log").open("wb"), stderr=subprocess.STDOUT)

    def query(self, expr: str) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        return get_json(url, timeout=5.0)

    def ready(self) -> bool:
        assert self.proc.poll() is None, (self.folder / "prometheus.log").read_text()[-2000:]
        try:
            code, body = self.query(f'up{{job="{JOB}"}} == 1')
            return code == 200 and bool(body["data"]["result"])
        except (OSError, ValueError):  # not listening yet, or a 503 with a plain-text body while it starts
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def prometheus(tmp_path):
    """Start Prometheus with ``prometheus.start(targets)``; it is always stopped at the end."""
    assert shutil.which("prometheus"), "the prometheus server is missing: `make test` installs it (Debian package)"
    started: list[Prometheus] = []

    class Starter:
        def start(self, targets: list[str]) -> Prometheus:
            folder = tmp_path / "prometheus"
            folder.mkdir()
            started.append(Prometheus(folder, targets))
            return started[-1]

    yield Starter()
    for server in started:
        server.stop()


def load(bootstrap: str, env: dict, rounds: int, pause: float) -> None:
    """The demo's own load (MovieLens items, then rating events, by the demo's producers), plus
    bad records for the DLQ series, in ``rounds``."""
    from polyrec.datasets.movielens import load_movies
    from polyrec_cli.demo import publish_catalogue, replay_ratings

    movies = list(load_movies().values())
    for r in range(rounds):
        run(publish_catalogue(bootstrap, env["POLYREC_ITEMS_TOPIC"], movies[r * 20:(r + 1) * 20]))
        run(replay_ratings(bootstrap, env["POLYREC_EVENTS_TOPIC"], 500, lambda n: None))
        bad = [(b"u1", b"not json"), event_record("u2", "i1", "like"), (b"someone-else", event_record("u3", "i2")[1])]
        run(send_records(bootstrap, env["POLYREC_EVENTS_TOPIC"], bad))
        time.sleep(pause)


def has_data(body: dict) -> bool:
    """A non-empty result with at least one number that is not NaN."""
    result = body.get("data", {}).get("result", [])
    return any(not math.isnan(float(r["value"][1])) for r in result)


@pytest.mark.integration
def test_every_dashboard_query_returns_data(broker, workers, prometheus, tmp_path):
    env = worker_env(broker, tmp_path)
    worker = workers.new(env)
    worker.wait_ready(90)
    prom = prometheus.start([f"127.0.0.1:{worker.metrics_port}"])
    wait_for(prom.ready, 30, what="Prometheus scraping the worker")

    load(broker, env, rounds=5, pause=2.0)
    # until the last round's metrics are scraped (lag gauges update every 5 s), for at most 30 s
    deadline = time.monotonic() + 30
    while (failures := query_failures(prom)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not failures, f"{len(failures)} dashboard queries failed:\n" + "\n".join(failures)


def query_failures(prom: Prometheus) -> list[str]:
    """Every dashboard query and variable that fails or returns no data, and every alert
    expression that fails to evaluate (alerts are normally silent), one line each."""
    dash = dashboard()
    values = substitutions(dash)
    failures = []
    for title, expr in panel_exprs(dash):
        query = expand(expr, values)
        code, body = prom.query(query)
        if code != 200 or body.get("status") != "success":
            failures.append(f"{title}: {query}\n    -> HTTP {code}: {body.get('error')}")
        elif not has_data(body):
            failures.append(f"{title}: {query}\n    -> no data: {body['data']['result']}")
    for name, selector, label in variable_queries(dash):
        code, body = prom.query(expand(selector, values))
        if code != 200 or not any(label in r["metric"] for r in body.get("data", {}).get("result", [])):
            failures.append(f"variable ${name}: no series {selector} with label {label!r}")
    for alert, expr in alert_exprs():
        code, body = prom.query(expr)
        if code != 200 or body.get("status") != "success":
            failures.append(f"alert {alert}: {expr}\n    -> HTTP {code}: {body.get('error')}")
    return failures
