"""A real MLServer 1.7.1 for the tests, in a venv of its own (`tests.venvs`), started with
`mlserver start` on loopback ports and stopped with its whole process group."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.server import free_port
from tests.venvs import peer_venv

VERSION = "1.7.1"
STARTUP_S = 180.0


def requirements() -> list[str]:
    import sklearn

    # MLServer 1.7's workers crash with a newer uvloop; the models are pickled by this
    # scikit-learn, so MLServer loads them with the same one.
    return [
        f"mlserver=={VERSION}",
        f"mlserver-sklearn=={VERSION}",
        "uvloop<0.21",
        f"scikit-learn=={sklearn.__version__}",
    ]


@dataclass(frozen=True)
class MLServer:
    http: str
    grpc_port: int
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self) -> None:
        """Stop the server and its workers (SIGTERM, then SIGKILL)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@contextlib.contextmanager
def running_mlserver(folder: Path, models: Mapping[str, dict[str, Any]]) -> Iterator[MLServer]:
    """`mlserver start` serving `models` (name -> model-settings.json), every one ready."""
    folder.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
        "load_models_at_startup": True,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    for name, model_settings in models.items():
        (folder / name).mkdir(exist_ok=True)
        (folder / name / "model-settings.json").write_text(
            json.dumps({"name": name, **model_settings})
        )
    log = folder / "mlserver.log"
    executable = peer_venv(f"mlserver-{VERSION}", requirements()) / "mlserver"
    env = {**os.environ, "PATH": f"{executable.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(executable), "start", str(folder)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = MLServer(f"http://127.0.0.1:{port}", grpc_port, log, process)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not all(_ready(server.http, name) for name in models):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"MLServer did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield server
    finally:
        server.stop()


def _ready(url: str, name: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/models/{name}/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False
