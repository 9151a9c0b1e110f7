"""KServe's own Python client (kserve 0.21, REST and gRPC), in a venv of its own, against a
real `mlops serve --grpc-port`: readiness, predictions equal to the model's, the request id,
and a 404 / NOT_FOUND for an unknown model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import joblib

from mlops import Client
from tests.models import training_data
from tests.server import free_port, running_server
from tests.venvs import peer_venv

KSERVE = "kserve==0.21.*"
SCRIPT = Path(__file__).resolve().parent.parent / "peers" / "kserve_client.py"


def test_kserves_own_client_over_rest_and_grpc(
    tmp_path: Path, model_files: dict[str, Path]
) -> None:
    python = peer_venv("kserve-0.21", [KSERVE]) / "python"
    store_url = f"sqlite:///{tmp_path / 'mlops.db'}"
    home = tmp_path / "home"
    rows = training_data()[0][:5]
    expected = joblib.load(model_files["joblib"]).predict(rows).tolist()
    with Client(store_url, home=home) as client:
        client.register("m", model_files["joblib"], trust=True)
        client.deploy("api", model="m:1")
    port = free_port()
    with running_server(store_url, home, "--grpc-port", str(port)) as server:
        done = subprocess.run(
            [
                str(python),
                str(SCRIPT),
                server.url,
                f"127.0.0.1:{port}",
                "api",
                json.dumps(rows.tolist()),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["rest_live"]
    assert seen["rest_model_ready"]
    assert seen["grpc_live"]
    assert seen["grpc_model_ready"]
    assert seen["rest_predictions"] == expected
    assert seen["grpc_predictions"] == expected
    assert seen["rest_id"] == seen["grpc_id"] == "kserve-1"
    assert "404" in seen["rest_unknown"]
    assert seen["grpc_unknown"] == "StatusCode.NOT_FOUND"
    assert sys.executable != str(python)  # the client ran in its own interpreter
