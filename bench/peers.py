"""Peer serving stacks measured on the same model and load: MLflow, BentoML and bare Starlette.

Steps (each is a function, usable by a gateway benchmark; ``run`` does them all):

1. ``train_models``: a 100-tree RandomForestClassifier and a LogisticRegression on 20 features
   (``make_classification``, 5000 samples, random_state 0), saved as joblib, and the forest also
   as an MLflow model folder (saved by the MLflow venv's own mlflow).
2. ``ensure_peer_venvs``: isolated venvs bench/.venvs/mlflow (full ``mlflow``) and
   bench/.venvs/bentoml (``bentoml``), each with the scikit-learn version of /work/main/.venv;
   reused when present with the same requirements.
3. ``serve``: starts a server in its own process group, waits until a real prediction succeeds,
   and stops the whole group afterwards. ``mlflow_server``, ``bentoml_server`` and
   ``starlette_server`` build the three peers with their default settings.
4. ``measure``: loadgen at 16 and 64 connections, single-row requests, a short warm-up, then
   3 runs of 15 s; medians are reported. The machine may be shared, so each run first waits
   until others leave it idle, and a run during which others used CPU is redone; each row
   carries the server's own CPU use and ``predict_ms`` (in-process single-row forest predict
   time, a yardstick of the machine's speed at that moment).

    .venv/bin/python bench/peers.py setup              # venvs + models, prints install times
    .venv/bin/python bench/peers.py run                # all targets; table + JSON in bench/.work
    .venv/bin/python bench/peers.py run --targets starlette-forest --duration 5 --repeats 1
    .venv/bin/python bench/peers.py serve mlflow       # start one peer and keep it up (Ctrl-C)

All traffic goes to 127.0.0.1; every run is bounded in time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
VENVS = BENCH / ".venvs"
WORK = BENCH / ".work"
MAIN_PYTHON = REPO / ".venv" / "bin" / "python"

sys.path.insert(0, str(BENCH))
from loadgen import run_load  # noqa: E402

N_FEATURES = 20
N_SAMPLES = 5000
N_TREES = 100
RANDOM_STATE = 0
HOST = "127.0.0.1"

# Keep the peers' usage telemetry off: this machine reaches no such service, and the benchmark
# must send nothing anywhere but 127.0.0.1.
QUIET_ENV = {
    "DO_NOT_TRACK": "true",
    "BENTOML_DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PYTHONUNBUFFERED": "1",
}


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelFiles:
    forest: Path  # joblib, RandomForestClassifier(n_estimators=100)
    logreg: Path  # joblib, LogisticRegression
    mlflow_forest: Path  # MLflow model folder holding the same forest
    row: list[float]  # one feature row used as the single-row request


def _dataset() -> tuple[Any, Any]:
    from sklearn.datasets import make_classification

    return make_classification(
        n_samples=N_SAMPLES,
        n_features=N_FEATURES,
        n_informative=10,
        random_state=RANDOM_STATE,
    )


def sample_row() -> list[float]:
    """The first row of the training set, as the features of every benchmark request."""
    x, _ = _dataset()
    return [float(v) for v in x[0]]


def predict_body(
    row: Sequence[float] | None = None, rows: int = 1, key: str = "instances"
) -> bytes:
    """``{"instances": [row] * rows}`` as bytes (``key`` renames the field)."""
    row = list(row) if row is not None else sample_row()
    return json.dumps({key: [row] * rows}).encode()


def train_models(
    folder: Path = WORK / "models", *, mlflow_python: Path | None = None
) -> ModelFiles:
    """Train both models, save them as joblib and the forest as an MLflow model folder.

    The MLflow folder is written by ``mlflow_python`` (default: the bench MLflow venv when it
    exists, else this interpreter) so that it matches the MLflow that serves it. MLflow 3's
    default format is skops, which needs the forest's tree type declared trusted.
    """
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    x, y = _dataset()
    forest = RandomForestClassifier(n_estimators=N_TREES, random_state=RANDOM_STATE).fit(x, y)
    logreg = LogisticRegression(max_iter=1000).fit(x, y)
    files = ModelFiles(
        forest=folder / "forest.joblib",
        logreg=folder / "logreg.joblib",
        mlflow_forest=folder / "mlflow_forest",
        row=[float(v) for v in x[0]],
    )
    joblib.dump(forest, files.forest)
    joblib.dump(logreg, files.logreg)
    if mlflow_python is None:
        candidate = VENVS / "mlflow" / "bin" / "python"
        mlflow_python = candidate if candidate.exists() else Path(sys.executable)
    save_mlflow_model(files.forest, files.mlflow_forest, x[:5].tolist(), python=mlflow_python)
    return files


_SAVE_MLFLOW = """
import json, shutil, sys
from pathlib import Path
import joblib, numpy as np
import mlflow.sklearn
from mlflow.models import infer_signature
model = joblib.load(sys.argv[1])
out = Path(sys.argv[2])
x = np.asarray(json.loads(sys.argv[3]), dtype=np.float64)
if out.exists():
    shutil.rmtree(out)
mlflow.sklearn.save_model(
    model,
    str(out),
    signature=infer_signature(x, model.predict(x)),
    skops_trusted_types=["sklearn.tree._tree.Tree"],
)
"""


def save_mlflow_model(
    joblib_path: Path, out_dir: Path, example_rows: list[list[float]], *, python: Path
) -> None:
    """``mlflow.sklearn.save_model`` of a joblib estimator, run by ``python``."""
    env = {**os.environ, **QUIET_ENV}
    subprocess.run(
        [str(python), "-c", _SAVE_MLFLOW, str(joblib_path), str(out_dir), json.dumps(example_rows)],
        check=True,
        env=env,
        cwd=str(WORK),
    )


# --------------------------------------------------------------------------- venvs


def main_sklearn_version() -> str:
    """scikit-learn's version in /work/main/.venv, read with its pip."""
    python = MAIN_PYTHON if MAIN_PYTHON.exists() else Path(sys.executable)
    out = subprocess.run(
        [str(python), "-m", "pip", "show", "scikit-learn"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    raise RuntimeError("scikit-learn is not installed in the main venv")


@dataclass
class VenvInfo:
    name: str
    python: Path
    requirements: list[str]
    install_s: float  # time of the install that made it (venv + pip install)
    reused: bool
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.python.parent


def ensure_venv(name: str, requirements: list[str], *, force: bool = False) -> VenvInfo:
    """A venv at bench/.venvs/NAME holding ``requirements``; reused when already made for them."""
    root = VENVS / name
    python = root / "bin" / "python"
    marker = root / "bench-venv.json"
    if not force and marker.exists() and python.exists():
        meta = json.loads(marker.read_text())
        if meta.get("requirements") == requirements:
            return VenvInfo(name, python, requirements, meta["install_s"], True, _versions(python))
    if root.exists():
        shutil.rmtree(root)
    VENVS.mkdir(parents=True, exist_ok=True)
    base = shutil.which("python3") or sys.executable
    t0 = time.monotonic()
    subprocess.run([base, "-m", "venv", str(root)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, *requirements], check=True)
    install_s = round(time.monotonic() - t0, 1)
    marker.write_text(json.dumps({"requirements": requirements, "install_s": install_s}))
    return VenvInfo(name, python, requirements, install_s, False, _versions(python))


def _versions(python: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    wanted = {"mlflow", "bentoml", "scikit-learn", "numpy", "uvicorn", "starlette", "fastapi"}
    try:
        return {
            p["name"].lower(): p["version"] for p in json.loads(out) if p["name"].lower() in wanted
        }
    except json.JSONDecodeError:
        return {}


PEER_REQUIREMENTS = {
    "mlflow": ["mlflow"],
    "bentoml": ["bentoml", "joblib"],
    # MLServer 1.7's workers crash with a newer uvloop.
    "mlserver": ["mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop<0.21"],
    "kserve": ["kserve==0.21.*", "joblib"],
}


def ensure_peer_venvs(
    names: Sequence[str] = ("mlflow", "bentoml"), *, force: bool = False
) -> dict[str, VenvInfo]:
    sklearn = f"scikit-learn=={main_sklearn_version()}"
    return {
        name: ensure_venv(name, [*PEER_REQUIREMENTS[name], sklearn], force=force) for name in names
    }


# --------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """All processes below ``pid`` (read from /proc), to catch any that left its group."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@dataclass
class Server:
    """A server process started in its own process group (see ``serve``)."""

    name: str
    cmd: list[str]
    url: str  # predict URL
    proc: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float = 0.0

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it and its descendants."""
        if self.proc.poll() is not None:
            return
        tree = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        time.sleep(0.5)
        for pid in tree:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _post(url: str, body: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def serve(
    name: str,
    cmd: list[str],
    url: str,
    body: bytes,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    ready_timeout_s: float = 180.0,
    check: Callable[[bytes], bool] | None = None,
) -> Iterator[Server]:
    """Start ``cmd`` in a new process group; yield once POST ``body`` to ``url`` answers 2xx.

    ``check`` may further validate the ready response. The log goes to bench/.work/logs/NAME.log.
    The group is stopped on exit, also on error.
    """
    logs = WORK / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    full_env = {**os.environ, **QUIET_ENV, **(env or {})}
    t0 = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(cwd) if cwd else None,
            start_new_session=True,
        )
    server = Server(name, cmd, url, proc, log_path)
    try:
        deadline = t0 + ready_timeout_s
        last = "no answer"
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} not ready after {ready_timeout_s}s ({last}); {log_path}"
                )
            try:
                status, answer = _post(url, body, timeout=5.0)
            except (OSError, urllib.error.URLError) as exc:
                last = repr(exc)
            else:
                last = f"HTTP {status}: {answer[:200]!r}"
                if 200 <= status < 300 and (check is None or check(answer)):
                    break
                if 200 <= status < 300:
                    raise RuntimeError(f"{name} answered wrongly: {last}")
            time.sleep(0.25)
        server.startup_s = round(time.monotonic() - t0, 2)
        yield server
    finally:
        server.stop()


def mlflow_server(
    model_dir: Path, port: int, venv: VenvInfo, body: bytes
) -> contextlib.AbstractContextManager[Server]:
    """``mlflow models serve`` with its defaults (1 uvicorn worker, 60 s timeout)."""
    cmd = [
        str(venv.bin / "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "-p",
        str(port),
        "-h",
        HOST,
    ]
    url = f"http://{HOST}:{port}/invocations"
    env = {"PATH": f"{venv.bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    return serve("mlflow", cmd, url, body, env=env, cwd=WORK, check=_has_predictions)


BENTO_SERVICE = '''"""BentoML 1.4 service for the peer benchmark: one joblib scikit-learn model."""

import os

import bentoml
import joblib
import numpy as np


@bentoml.service
class Forest:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(instances, dtype=np.float64)).tolist()
'''


def write_bento_service(folder: Path = WORK / "bento") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "service.py").write_text(BENTO_SERVICE)
    return folder


def bentoml_server(
    model: Path, port: int, venv: VenvInfo, body: bytes
) -> contextlib.AbstractContextManager[Server]:
    """``bentoml serve service:Forest`` with the service's default settings (1 worker).

    The endpoint is POST /predict with ``{"instances": [[...]]}`` (the api's argument name) and
    answers a bare JSON list.
    """
    folder = write_bento_service()
    cmd = [str(venv.bin / "bentoml"), "serve", "service:Forest", "--host", HOST, "-p", str(port)]
    url = f"http://{HOST}:{port}/predict"
    env = {
        "BENCH_MODEL_PATH": str(model),
        "BENTOML_HOME": str(WORK / "bentoml_home"),
        "PATH": f"{venv.bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return serve("bentoml", cmd, url, body, env=env, cwd=folder, check=_is_list)


def starlette_server(
    model: Path,
    port: int,
    body: bytes,
    *,
    workers: int = 2,
    name: str = "model",
    model_threads: int | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """bench/bare_starlette.py under uvicorn with ``workers`` processes and no access log;
    ``model_threads`` caps the predictions at once per worker (default: Starlette's pool)."""
    python = MAIN_PYTHON if MAIN_PYTHON.exists() else Path(sys.executable)
    cmd = [
        str(python),
        "-m",
        "uvicorn",
        "bare_starlette:app",
        "--app-dir",
        str(BENCH),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    url = f"http://{HOST}:{port}/v1/models/{name}:predict"
    env = {"BENCH_MODEL_PATH": str(model), "BENCH_MODEL_NAME": name}
    if model_threads:
        env["BENCH_MODEL_THREADS"] = str(model_threads)
    return serve(
        f"starlette-{model.stem}", cmd, url, body, env=env, cwd=REPO, check=_has_predictions
    )


def v2_body(row: Sequence[float], input_name: str = "input") -> bytes:
    """One row as an Open Inference Protocol (V2) REST request."""
    tensor = {"name": input_name, "shape": [1, len(row)], "datatype": "FP64", "data": list(row)}
    return json.dumps({"inputs": [tensor]}).encode()


def _has_outputs(answer: bytes) -> bool:
    try:
        return isinstance(json.loads(answer).get("outputs"), list)
    except (ValueError, AttributeError):
        return False


@dataclass(frozen=True)
class Endpoints:
    """Where a V2 server answers: its REST infer URL and its gRPC target (host:port)."""

    rest: str
    grpc: str
    model: str


def mlops_server(
    model: Path, port: int, grpc_port: int, body: bytes, *, workers: int = 2
) -> contextlib.AbstractContextManager[Server]:
    """``mlops serve`` with its defaults but ``--workers`` and ``--grpc-port``, on a store of
    its own that holds the model (registered and deployed as ``model``)."""
    home = WORK / f"mlops-{model.stem}"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    env = {"MLOPS_HOME": str(home), "MLOPS_STORE": f"sqlite:///{home / 'mlops.db'}"}
    mlops = str(MAIN_PYTHON.parent / "mlops")
    for args in (
        ["register", "model", str(model), "--trust"],
        ["deploy", "model", "--model", "model:1"],
    ):
        subprocess.run([mlops, *args], env={**os.environ, **env}, check=True, capture_output=True)
    cmd = [mlops, "serve", "--port", str(port), "--workers", str(workers)]
    cmd += ["--grpc-port", str(grpc_port), "--log-level", "warning"]
    url = f"http://{HOST}:{port}/v2/models/model/infer"
    return serve(f"mlops-{model.stem}", cmd, url, body, env=env, check=_has_outputs)


def mlserver_server(
    model: Path,
    port: int,
    grpc_port: int,
    venv: VenvInfo,
    body: bytes,
    *,
    batching: bool,
    declare: int | None = None,
) -> contextlib.AbstractContextManager[Server]:
    """``mlserver start`` with MLServer's defaults and mlserver-sklearn, or with its adaptive
    batching on (at most 32 requests, 5 ms). With ``declare`` (a number of features), the
    model's settings declare its input and output tensors, as a remote version needs."""
    folder = WORK / f"mlserver-{model.stem}{'-batch' if batching else ''}"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    settings = {
        "host": HOST,
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": free_port(),
    }
    model_settings: dict[str, Any] = {
        "name": "model",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model)},
    }
    if batching:
        model_settings |= {"max_batch_size": 32, "max_batch_time": 0.005}
    if declare is not None:
        model_settings["inputs"] = [{"name": "input", "datatype": "FP64", "shape": [-1, declare]}]
        model_settings["outputs"] = [{"name": "predict", "datatype": "INT64", "shape": [-1, 1]}]
    (folder / "settings.json").write_text(json.dumps(settings))
    (folder / "model-settings.json").write_text(json.dumps(model_settings))
    cmd = [str(venv.bin / "mlserver"), "start", str(folder)]
    url = f"http://{HOST}:{port}/v2/models/model/infer"
    env = {"PATH": f"{venv.bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    name = f"mlserver-{model.stem}{'-batch' if batching else ''}"
    return serve(name, cmd, url, body, env=env, cwd=folder, check=_has_outputs)


KSERVE_SERVER = '''"""KServe 0.21's Python ModelServer for the peer benchmark: one joblib model."""

import argparse

import joblib
from kserve import Model, ModelServer, model_server
from kserve.utils.utils import get_predict_input, get_predict_response


class SklearnModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        answers = self.model.predict(get_predict_input(payload))
        return get_predict_response(payload, answers, self.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start(
        [SklearnModel(args.model_name, args.model_path)]
    )
'''


def kserve_server(
    model: Path, port: int, grpc_port: int, venv: VenvInfo, body: bytes
) -> contextlib.AbstractContextManager[Server]:
    """KServe's Python ``ModelServer`` with its defaults (1 worker), REST and gRPC."""
    folder = WORK / "kserve"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server.py").write_text(KSERVE_SERVER)
    cmd = [str(venv.python), str(folder / "server.py"), "--model_name", "model"]
    cmd += ["--model_path", str(model), "--http_port", str(port), "--grpc_port", str(grpc_port)]
    url = f"http://{HOST}:{port}/v2/models/model/infer"
    return serve(f"kserve-{model.stem}", cmd, url, body, cwd=folder, check=_has_outputs)


def run_grpc(
    url: str, body: bytes, connections: int, duration_s: float, **_: Any
) -> dict[str, Any]:
    """bench/grpc_load.py (h2load where installed) against ``grpc://HOST:PORT/MODEL``, ``body`` the
    row (JSON)."""
    target, _, model = url.removeprefix("grpc://").partition("/")
    out = subprocess.run(
        [
            str(MAIN_PYTHON),
            str(BENCH / "grpc_load.py"),
            target,
            model,
            "--row",
            body.decode(),
            "-c",
            str(connections),
            "-d",
            str(duration_s),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 120,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _has_predictions(answer: bytes) -> bool:
    try:
        return isinstance(json.loads(answer).get("predictions"), list)
    except (ValueError, AttributeError):
        return False


def _is_list(answer: bytes) -> bool:
    try:
        return isinstance(json.loads(answer), list)
    except ValueError:
        return False


# --------------------------------------------------------------------------- measuring


# The machine may be shared (other sessions' test suites, CI): measure only when it is quiet, and
# account for CPU time that neither the server under test nor the load generator used.

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_fields() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]


def _busy_jiffies() -> int:
    """user + nice + system jiffies of all CPUs (irq/softirq left out: loopback traffic)."""
    fields = _cpu_fields()
    return fields[0] + fields[1] + fields[2]


def _steal_jiffies() -> int:
    """Time the hypervisor gave this VM's CPUs to someone else."""
    fields = _cpu_fields()
    return fields[7] if len(fields) > 7 else 0


def process_jiffies(pid: int) -> int:
    """utime + stime of one process; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(stat[11]) + int(stat[12])


def _tree_jiffies(pid: int) -> int:
    """utime + stime of ``pid`` and its live descendants."""
    return sum(process_jiffies(p) for p in {pid, *descendants(pid)})


def machine_busy(interval_s: float = 1.0) -> float:
    """Cores kept busy over ``interval_s`` (0.0 .. os.cpu_count())."""
    before = _busy_jiffies()
    time.sleep(interval_s)
    return (_busy_jiffies() - before) / _CLK_TCK / interval_s


def wait_for_quiet(
    max_busy_cores: float = 0.25, settle_s: float = 3.0, timeout_s: float = 900.0
) -> float:
    """Wait until the machine has used under ``max_busy_cores`` for ``settle_s``; return the wait.

    Gives up (and says so) after ``timeout_s``; call it while the server under test is idle.
    """
    t0 = time.monotonic()
    told = False
    while True:
        busy = machine_busy(settle_s)
        if busy < max_busy_cores:
            return round(time.monotonic() - t0, 1)
        if time.monotonic() - t0 > timeout_s:
            print(f"   machine still busy ({busy:.2f} cores); measuring anyway", flush=True)
            return round(time.monotonic() - t0, 1)
        if not told:
            print(f"   machine busy ({busy:.2f} cores used by others); waiting", flush=True)
            told = True


_calibration_models: dict[Path, Any] = {}


def predict_ms(model_path: Path, row: Sequence[float] | None = None, seconds: float = 1.0) -> float:
    """In-process single-row ``predict`` time of a joblib model, in ms (median of 10 batches).

    A yardstick for the machine's speed at that moment: the VM's cores are not equally fast
    from one minute to the next, so rows measured at different times are compared through it.
    """
    import joblib
    import numpy as np

    model = _calibration_models.get(model_path)
    if model is None:
        model = _calibration_models[model_path] = joblib.load(model_path)
    x = np.asarray([list(row) if row is not None else sample_row()], dtype=np.float64)
    t0 = time.perf_counter()
    model.predict(x)
    per_batch = max(1, round(seconds / 10 / max(time.perf_counter() - t0, 1e-6)))
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        for _ in range(per_batch):
            model.predict(x)
        times.append((time.perf_counter() - t0) / per_batch)
    return round(statistics.median(times) * 1000, 3)


def _self_and_children_jiffies() -> int:
    own = os.times()
    return round((own.user + own.system + own.children_user + own.children_system) * _CLK_TCK)


def load_with_accounting(
    url: str,
    body: bytes,
    connections: int,
    duration_s: float,
    server_pid: int | None,
    loader: Callable[..., dict[str, Any]] = run_load,
    **kw: Any,
) -> dict[str, Any]:
    """``run_load`` plus "server_cores", "client_cores" (load generator and this process),
    "foreign_cores" (anything else) and "steal_cores" (the hypervisor), averaged over the run."""
    busy0, ours0, steal0 = _busy_jiffies(), _self_and_children_jiffies(), _steal_jiffies()
    server0 = _tree_jiffies(server_pid) if server_pid else 0
    t0 = time.monotonic()
    result = loader(url, body, connections, duration_s, **kw)
    elapsed = time.monotonic() - t0
    busy = _busy_jiffies() - busy0
    ours = _self_and_children_jiffies() - ours0
    server = (_tree_jiffies(server_pid) - server0) if server_pid else 0
    result["server_cores"] = round(server / _CLK_TCK / elapsed, 2)
    result["client_cores"] = round(ours / _CLK_TCK / elapsed, 2)
    result["foreign_cores"] = round(max(0, busy - ours - server) / _CLK_TCK / elapsed, 2)
    result["steal_cores"] = round((_steal_jiffies() - steal0) / _CLK_TCK / elapsed, 2)
    return result


def measure(
    url: str,
    body: bytes,
    *,
    connections: Sequence[int] = (16, 64),
    duration_s: float = 15.0,
    repeats: int = 3,
    warmup_s: float = 3.0,
    engine: str = "auto",
    labels: dict[str, Any] | None = None,
    server_pid: int | None = None,
    quiet: bool = True,
    max_foreign_cores: float = 0.25,
    retries: int = 3,
    loader: Callable[..., dict[str, Any]] = run_load,
) -> list[dict[str, Any]]:
    """For each connection count: a warm-up, then ``repeats`` runs; one row of medians each.

    A row holds ``labels``, "connections", the medians of rps/p50_ms/p90_ms/p99_ms, the summed
    "errors"/"non_2xx"/"requests", "foreign_cores" (the worst run's) and "runs" (every run's
    full loadgen result). With ``quiet``, each run waits for an idle machine first, and a run
    during which others used more than ``max_foreign_cores`` is redone (up to ``retries``
    times). Pass the server's pid as ``server_pid`` so that its CPU is not counted as foreign.
    """
    rows = []
    for conns in connections:
        if quiet:
            wait_for_quiet()
        if warmup_s > 0:
            loader(url, body, conns, warmup_s, engine=engine)
        runs = []
        for _ in range(repeats):
            for attempt in range(retries + 1):
                if quiet:
                    wait_for_quiet()
                r = load_with_accounting(
                    url, body, conns, duration_s, server_pid, loader, engine=engine
                )
                r["attempt"] = attempt
                if not quiet or r["foreign_cores"] <= max_foreign_cores or attempt == retries:
                    break
                print(
                    f"   others used {r['foreign_cores']} cores during the run; redoing it",
                    flush=True,
                )
            runs.append(r)
        row: dict[str, Any] = dict(labels or {})
        row["connections"] = conns
        for key in ("rps", "p50_ms", "p90_ms", "p99_ms"):
            row[key] = round(statistics.median(r[key] for r in runs), 2)
        for key in ("errors", "non_2xx", "requests"):
            row[key] = sum(r[key] for r in runs)
        row["rps_all"] = [round(r["rps"], 1) for r in runs]
        row["server_cores"] = round(statistics.median(r["server_cores"] for r in runs), 2)
        row["foreign_cores"] = max(r["foreign_cores"] for r in runs)
        row["engine"] = runs[0]["engine"]
        row["runs"] = runs
        rows.append(row)
        print(format_table([row], header=False), flush=True)
    return rows


TARGETS = ("mlflow", "bentoml", "starlette-forest", "starlette-logreg")
V2_SERVERS = ("mlops", "mlserver", "mlserver-batch", "kserve")
V2_TARGETS = tuple(f"{server}-{model}" for server in V2_SERVERS for model in ("forest", "logreg"))
"""Open Inference Protocol servers, each measured over V2 REST and gRPC (mlops's logistic
regression over V1 REST too, beside bare Starlette)."""
# Not run by default: the baseline with one prediction at a time per worker.
EXTRA_TARGETS = ("starlette-forest-1thread",)


def run(
    targets: Sequence[str] = TARGETS,
    *,
    connections: Sequence[int] = (16, 64),
    duration_s: float = 15.0,
    repeats: int = 3,
    warmup_s: float = 3.0,
    engine: str = "auto",
    starlette_workers: int = 2,
    quiet: bool = True,
) -> dict[str, Any]:
    """Set up (cached venvs, fresh models), then start, measure and stop each target in turn."""
    known = TARGETS + EXTRA_TARGETS + V2_TARGETS
    unknown = set(targets) - set(known)
    if unknown:
        raise ValueError(f"unknown targets {sorted(unknown)}; choose from {known}")
    WORK.mkdir(parents=True, exist_ok=True)
    wanted = {t.rpartition("-")[0] if t in V2_TARGETS else t for t in targets}
    venvs = ensure_peer_venvs(
        [
            n
            for n in ("mlflow", "bentoml", "mlserver", "kserve")
            if n in wanted or (n == "mlserver" and "mlserver-batch" in wanted)
        ]
    )
    files = train_models()
    body = predict_body(files.row)
    rows: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    for target in targets:
        port = free_port()
        if target in V2_TARGETS:
            rows += _measure_v2(
                target,
                files,
                port,
                venvs,
                connections,
                duration_s,
                repeats,
                warmup_s,
                engine,
                quiet,
                startup,
            )
            continue
        if target == "mlflow":
            ctx = mlflow_server(files.mlflow_forest, port, venvs["mlflow"], body)
            labels = {"server": "mlflow models serve (1 worker)", "model": "forest"}
        elif target == "bentoml":
            ctx = bentoml_server(files.forest, port, venvs["bentoml"], body)
            labels = {"server": "bentoml serve (defaults)", "model": "forest"}
        else:
            model = files.logreg if target == "starlette-logreg" else files.forest
            threads = 1 if target.endswith("-1thread") else None
            ctx = starlette_server(
                model, port, body, workers=starlette_workers, model_threads=threads
            )
            labels = {
                "server": f"bare starlette ({starlette_workers} workers"
                + (", 1 model thread each)" if threads else ")"),
                "model": model.stem,
            }
        print(f"== {target}", flush=True)
        if quiet:
            wait_for_quiet()
        labels["forest_predict_ms"] = predict_ms(files.forest, files.row)
        with ctx as server:
            startup[target] = server.startup_s
            print(f"   ready in {server.startup_s}s at {server.url}", flush=True)
            rows += measure(
                server.url,
                body,
                connections=connections,
                duration_s=duration_s,
                repeats=repeats,
                warmup_s=warmup_s,
                engine=engine,
                labels=labels,
                server_pid=server.proc.pid,
                quiet=quiet,
            )
        after = predict_ms(files.forest, files.row)
        for row in rows:
            row.setdefault("forest_predict_ms_after", after)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "settings": {
            "connections": list(connections),
            "duration_s": duration_s,
            "repeats": repeats,
            "warmup_s": warmup_s,
            "cpus": os.cpu_count(),
        },
        "venvs": {
            k: {"install_s": v.install_s, "reused": v.reused, "versions": v.versions}
            for k, v in venvs.items()
        },
        "startup_s": startup,
        "rows": rows,
    }


def _measure_v2(
    target: str,
    files: ModelFiles,
    port: int,
    venvs: dict[str, VenvInfo],
    connections: Sequence[int],
    duration_s: float,
    repeats: int,
    warmup_s: float,
    engine: str,
    quiet: bool,
    startup: dict[str, float],
) -> list[dict[str, Any]]:
    """One V2 server and model over V2 REST and gRPC (and mlops's logreg over V1 REST)."""
    server_name, _, model_name = target.rpartition("-")
    model = files.logreg if model_name == "logreg" else files.forest
    grpc_port = free_port()
    body = v2_body(files.row)
    if server_name == "mlops":
        ctx = mlops_server(model, port, grpc_port, body)
        label = "mlops serve (2 workers)"
    elif server_name.startswith("mlserver"):
        batching = server_name == "mlserver-batch"
        ctx = mlserver_server(model, port, grpc_port, venvs["mlserver"], body, batching=batching)
        label = "MLServer 1.7" + (" (adaptive batching 32, 5 ms)" if batching else " (defaults)")
    else:
        ctx = kserve_server(model, port, grpc_port, venvs["kserve"], body)
        label = "KServe 0.21 ModelServer (defaults)"
    loads: list[tuple[str, str, bytes, Callable[..., dict[str, Any]]]] = [
        ("rest-v2", f"http://{HOST}:{port}/v2/models/model/infer", body, run_load),
        ("grpc", f"grpc://{HOST}:{grpc_port}/model", json.dumps(files.row).encode(), run_grpc),
    ]
    if target == "mlops-logreg":
        v1 = f"http://{HOST}:{port}/v1/models/model:predict"
        loads.append(("rest-v1", v1, predict_body(files.row), run_load))
    print(f"== {target}", flush=True)
    if quiet:
        wait_for_quiet()
    rows: list[dict[str, Any]] = []
    with ctx as server:
        startup[target] = server.startup_s
        print(f"   ready in {server.startup_s}s at {server.url}", flush=True)
        for transport, url, payload, loader in loads:
            labels = {"server": label, "model": model.stem, "transport": transport}
            rows += measure(
                url,
                payload,
                connections=connections,
                duration_s=duration_s,
                repeats=repeats,
                warmup_s=warmup_s,
                engine=engine,
                labels=labels,
                server_pid=server.proc.pid,
                quiet=quiet,
                loader=loader,
            )
    return rows


def format_table(rows: Sequence[dict[str, Any]], *, header: bool = True) -> str:
    cols = (
        "server",
        "model",
        "transport",
        "connections",
        "rps",
        "p50_ms",
        "p99_ms",
        "errors",
        "server_cores",
        "foreign_cores",
        "forest_predict_ms",
    )
    lines = []
    if header:
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "|".join("---" for _ in cols) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup", help="create the venvs (cached) and train the models")
    setup.add_argument("--force", action="store_true", help="rebuild the venvs")
    go = sub.add_parser("run", help="measure the targets")
    go.add_argument("--targets", help="comma-separated (default: every target of the mode)")
    go.add_argument("--connections", type=_ints, default=[16, 64])
    go.add_argument("--duration", type=float, default=15.0)
    go.add_argument("--repeats", type=int, default=3)
    go.add_argument("--warmup", type=float, default=3.0)
    go.add_argument("--engine", choices=["auto", "wrk", "python"], default="auto")
    go.add_argument("--starlette-workers", type=int, default=2)
    go.add_argument(
        "--no-wait",
        action="store_true",
        help="measure at once even if other processes keep the machine busy",
    )
    go.add_argument("--out", type=Path, help="JSON result file (default bench/.work/peers-*.json)")
    one = sub.add_parser("serve", help="start one target and keep it up until Ctrl-C")
    one.add_argument("target", choices=TARGETS + EXTRA_TARGETS)
    go.add_argument("--v2", action="store_true", help="the V2 servers (REST and gRPC) instead")
    one.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    if args.command == "setup":
        for name, info in ensure_peer_venvs(force=args.force).items():
            state = "reused" if info.reused else "installed"
            print(f"{name}: {state}, install took {info.install_s}s, {info.versions}")
        files = train_models()
        print(f"models: {files.forest}, {files.logreg}, {files.mlflow_forest}")
        return 0

    if args.command == "serve":
        files = train_models()
        body = predict_body(files.row)
        if args.target in ("mlflow", "bentoml"):
            venv = ensure_peer_venvs()[args.target]
            make = mlflow_server if args.target == "mlflow" else bentoml_server
            model = files.mlflow_forest if args.target == "mlflow" else files.forest
            ctx = make(model, args.port, venv, body)
        else:
            model = files.logreg if args.target == "starlette-logreg" else files.forest
            threads = 1 if args.target.endswith("-1thread") else None
            ctx = starlette_server(model, args.port, body, model_threads=threads)
        with ctx as server, contextlib.suppress(KeyboardInterrupt):
            print(f"{server.name} ready at {server.url}; body: {body.decode()}", flush=True)
            while server.proc.poll() is None:
                time.sleep(1)
        return 0

    if args.targets:
        targets = [t for t in args.targets.split(",") if t]
    else:
        targets = [*V2_TARGETS, "starlette-forest", "starlette-logreg"] if args.v2 else TARGETS
    result = run(
        targets,
        connections=args.connections,
        duration_s=args.duration,
        repeats=args.repeats,
        warmup_s=args.warmup,
        engine=args.engine,
        starlette_workers=args.starlette_workers,
        quiet=not args.no_wait,
    )
    out = args.out or WORK / f"peers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print()
    print(format_table(result["rows"]))
    print(f"\nstartup: {result['startup_s']}; venvs: {result['venvs']}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
