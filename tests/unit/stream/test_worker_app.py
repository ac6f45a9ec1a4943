"""The worker's Faust app takes its configuration from polyrec's settings alone (pure: the app is
built, never started)."""

from __future__ import annotations

from stream.app import NEVER_BY_COUNT, Worker
from stream.settings import Settings


def test_the_workers_offsets_are_committed_by_time_alone(tmp_path):
    """Faust would also commit every 10,000 acknowledged events, more often than the interval under
    load, each commit writing the item contributions (docs/performance.md)."""
    worker = Worker(Settings(items_agent=False, data_dir=str(tmp_path), web_port=0, metrics_port=0,
                             commit_interval_s=2.5))
    assert worker.app.conf.broker_commit_interval == 2.5
    assert worker.app.conf.broker_commit_every == NEVER_BY_COUNT >= 2**62


def test_fausts_own_environment_variables_do_not_configure_the_worker(monkeypatch, tmp_path):
    """A Kubernetes Service named "web" sets WEB_PORT=tcp://...; Faust would read it (and the worker
    fail to start), and APP_WEB_TABLES_ENABLED would open the table views, user state without auth."""
    for name, value in {"WEB_PORT": "tcp://10.96.0.12:80", "APP_WEB_TABLES_ENABLED": "true",
                        "BROKER_COMMIT_INTERVAL": "99", "BROKER_COMMIT_EVERY": "10"}.items():
        monkeypatch.setenv(name, value)
    worker = Worker(Settings(items_agent=False, data_dir=str(tmp_path), web_port=6070, metrics_port=0))
    conf = worker.app.conf
    assert conf.web_port == 6070 and not conf.web_tables_enabled
    assert conf.broker_commit_interval == Settings().commit_interval_s and conf.broker_commit_every > 10
