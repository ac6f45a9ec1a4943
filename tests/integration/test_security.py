"""A worker and ``polyrec forget`` against a Redis that requires TLS and a password (a real
``redis-server`` with certificates made here), and no password in any log line or printout."""

import json
import secrets
import shutil
import subprocess
import sys
import time

import pytest
import redis

from polyrec_cli.devservers import free_port, port_open
from polyrec_cli.harness import event_record, send_records
from stream.recs import recs_key
from tests.support import run, wait_for, worker_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def tls_redis(tmp_path):
    """A TLS-only redis-server with a password: its URL (CA and password in it) and the password."""
    if not (shutil.which("redis-server") and shutil.which("openssl")):
        pytest.fail("redis-server and openssl are needed (Debian: redis-server, openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    password, port = f"pw-{secrets.token_hex(8)}", free_port()
    proc = subprocess.Popen(["redis-server", "--port", "0", "--tls-port", str(port), "--tls-cert-file", cert,
                             "--tls-key-file", key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no",
                             "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", tmp_path],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"rediss://:{password}@127.0.0.1:{port}/0?ssl_ca_certs={cert}", password
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_worker_and_the_commands_use_a_redis_behind_tls_and_a_password_and_never_print_it(broker, tmp_path,
                                                                                           workers, tls_redis):
    url, password = tls_redis
    env = worker_env(broker, tmp_path, REDIS_URL=url)
    prefix = env["POLYREC_REDIS_PREFIX"]
    client = redis.Redis.from_url(url)
    with pytest.raises(redis.exceptions.ConnectionError):  # plain text is refused: the port speaks TLS only
        redis.Redis(port=client.connection_pool.connection_kwargs["port"], socket_timeout=2).ping()
    w = workers.new(env)
    w.wait_ready()
    run(send_records(broker, env["POLYREC_EVENTS_TOPIC"],
                     [event_record("seed", f"item{n}", "view") for n in range(20)] + [event_record("ann", "item3")]))
    wait_for(lambda: client.get(recs_key(prefix, "ann")), 20, what="recommendations in the TLS Redis")

    config = subprocess.run([sys.executable, "-m", "polyrec_cli", "config"], env=env, capture_output=True, text=True)
    assert config.returncode == 0 and "REDIS_URL=rediss://:***@127.0.0.1" in config.stdout
    forget = subprocess.run([sys.executable, "-m", "polyrec_cli", "forget", "ann", "--timeout", "30"], env=env,
                            capture_output=True, text=True, timeout=90)
    assert forget.returncode == 0, forget.stderr
    assert json.loads(forget.stdout)["applied"] and client.get(recs_key(prefix, "ann")) is None
    assert w.stop() == 0
    printed = {"worker log": w.log.read_text(), "config": config.stdout + config.stderr,
               "forget": forget.stdout + forget.stderr}
    assert "REDIS_URL=rediss://:***@127.0.0.1" in printed["worker log"]  # it logs its settings, masked
    for where, text in printed.items():
        assert password not in text, f"the Redis password is in the {where}"
    client.close()


def test_the_documented_least_privilege_redis_acl_is_enough_for_a_worker_and_the_commands(broker, tmp_path,
                                                                                          workers):
    """docs/configuration.md's ``ACL SETUSER`` line, applied as written to a Redis of its own: a worker
    publishes through that user (its Lua write check included), ``polyrec recs`` reads and
    ``polyrec forget`` erases; the user can touch no other key."""
    import shlex
    from pathlib import Path

    from polyrec_cli.devservers import ensure_redis

    line = next(x for x in (Path(__file__).parents[2] / "docs/configuration.md").read_text().splitlines()
                if x.startswith("ACL SETUSER polyrec "))
    port = free_port()
    server = ensure_redis(f"redis://127.0.0.1:{port}/0")
    try:
        admin = redis.Redis(port=port)
        assert admin.execute_command(*shlex.split(line)) in (b"OK", "OK", True)
        url = f"redis://polyrec:secret@127.0.0.1:{port}/0"
        env = worker_env(broker, tmp_path, REDIS_URL=url, POLYREC_REDIS_PREFIX="polyrec")
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).set("other:key", "x")
        w = workers.new(env)
        w.wait_ready()
        events = [event_record("seed", f"item{n}", "view") for n in range(20)] + [event_record("ann", "item3")]
        run(send_records(broker, env["POLYREC_EVENTS_TOPIC"], events))
        wait_for(lambda: admin.get(recs_key("polyrec", "ann")), 20, what="recommendations through the ACL user")
        recs = subprocess.run([sys.executable, "-m", "polyrec_cli", "recs", "ann"], env=env, capture_output=True,
                              text=True)
        assert recs.returncode == 0 and json.loads(recs.stdout)["user_id"] == "ann", recs.stderr
        forget = subprocess.run([sys.executable, "-m", "polyrec_cli", "forget", "ann", "--timeout", "30"], env=env,
                                capture_output=True, text=True, timeout=90)
        assert forget.returncode == 0, forget.stderr
        assert admin.get(recs_key("polyrec", "ann")) is None
        assert "NOPERM" not in w.log.read_text()
        w.check()
    finally:
        server.stop()
