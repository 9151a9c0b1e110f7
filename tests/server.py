"""Starting `mlops serve` as a user would: a real process on a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

MLOPS = str(Path(sys.executable).with_name("mlops"))
REPO = Path(__file__).resolve().parent.parent

T = TypeVar("T")

STARTUP_S = 300.0
"""How long a test lets a process start (imports, migrations, loading models) before it gives
up: a guard against a hang, not a measure of speed. A quiet machine starts `mlops serve` in
seconds; one whose cores another job keeps busy can take a minute or more."""

SETTLE_S = 60.0
"""How long a test waits for a change to reach a process (a route, a flush, a tick) when nothing
else moves meanwhile: again a guard against a hang, which a loaded machine must not reach."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, process: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.process = process
        self.url = url
        self.log = log

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def server_env(store_url: str, home: Path) -> dict[str, str]:
    env = {**os.environ, "MLOPS_HOME": str(home), "MLOPS_STORE": store_url}
    # Test-only model classes (slow, NaN) live in the tests package; the server must import them.
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def workers_in(args: Sequence[str]) -> int:
    """The number of worker processes that `mlops serve *args` starts."""
    return int(args[list(args).index("--workers") + 1]) if "--workers" in args else 1


def wait_workers(
    url: str,
    workers: int,
    *,
    ready: bool = False,
    alive: Callable[[], bool] = lambda: True,
    timeout: float = STARTUP_S,
) -> None:
    """Until `workers` distinct worker processes of the gateway at `url` have answered
    `/v1/gateway` (with its routes loaded, if `ready`): each probe is a new connection, which
    any worker that listens may accept, and a worker still starting accepts none. Fails at once
    when `alive()` says the gateway is gone."""
    seen: set[str] = set()

    def probe() -> set[str]:
        assert alive(), f"the gateway at {url} exited while its workers started"
        with contextlib.suppress(httpx.TransportError):
            status = httpx.get(f"{url}/v1/gateway", timeout=10).json()
            if status["ready"] or not ready:
                seen.add(status["worker"])
        return seen

    eventually(probe, lambda found: len(found) >= workers, timeout)


@contextmanager
def running_server(
    store_url: str, home: Path, *args: str, ready_timeout: float = STARTUP_S
) -> Iterator[Server]:
    """`mlops serve` on a free port, every worker answering, stopped (SIGTERM) afterwards."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / f"serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [MLOPS, "serve", "--port", str(port), "--log-level", "warning", *args],
            env=server_env(store_url, home),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    scheme = "https" if "--tls-cert" in args else "http"
    server = Server(process, f"{scheme}://127.0.0.1:{port}", log)
    probe = "/api/v1/health" if "--no-gateway" in args else "/v2/health/live"
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlops serve exited {process.returncode}: {log.read_text()}")
            try:
                # A test's own CA signs a TLS server's certificate: the probe asks only "up?".
                answer = httpx.get(f"{server.url}{probe}", timeout=1, verify=False)
                if answer.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlops serve did not start: {log.read_text()}")
            time.sleep(0.1)
        if workers_in(args) > 1:
            wait_workers(
                server.url,
                workers_in(args),
                alive=lambda: process.poll() is None,
                timeout=ready_timeout,
            )
        yield server
    finally:
        server.stop()


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is truthy; return its value, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def eventually(fetch: Callable[[], T], check: Callable[[T], bool], timeout: float = 10.0) -> T:
    """Poll `fetch()` until `check` accepts its value; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if check(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout} s; last value: {value!r}")
        time.sleep(0.05)


class Cli:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MLOPS, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str) -> object:
        return json.loads(self(*args, "-o", "json").stdout)


class Traffic:
    """`bodies` POSTed in turn to `path`, each on one of `connections` keep-alive connections,
    until stopped: (status, release revision) of each answer, in order."""

    def __init__(self, url: str, path: str, bodies: Sequence[Any], connections: int = 1) -> None:
        self.url, self.path, self.bodies = url, path, bodies
        self.seen: list[tuple[int, int]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(k, connections)) for k in range(connections)
        ]

    def _run(self, offset: int, stride: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = offset
            while not self._stop.is_set():
                r = http.post(self.path, json=self.bodies[i % len(self.bodies)])
                self.seen.append((r.status_code, int(r.headers.get("x-release-revision", -1))))
                i += stride
                time.sleep(0.005)

    def since(self, mark: int) -> Counter[tuple[int, int]]:
        return Counter(self.seen[mark:])

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
