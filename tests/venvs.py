"""Venvs of their own for peers the tests run (MLServer, KServe's client): made once per
machine in `~/.cache/mlops-test-venvs`, from PyPI, reused while they hold the same
requirements; made under a lock, so parallel test workers make each once."""

from __future__ import annotations

import fcntl
import json
import subprocess
import venv
from collections.abc import Sequence
from pathlib import Path

ROOT = Path.home() / ".cache" / "mlops-test-venvs"
INSTALL_S = 1200


def peer_venv(name: str, requirements: Sequence[str]) -> Path:
    """The `bin` folder of venv `name` holding `requirements`."""
    root = ROOT / name
    marker = root / "installed.json"
    wanted = json.dumps(list(requirements))
    ROOT.mkdir(parents=True, exist_ok=True)
    with open(ROOT / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (marker.exists() and marker.read_text() == wanted):
            venv.create(root, with_pip=True, clear=True)
            done = subprocess.run(
                [str(root / "bin" / "python"), "-m", "pip", "install", "-q", *requirements],
                capture_output=True,
                text=True,
                timeout=INSTALL_S,
                check=False,
            )
            assert done.returncode == 0, f"pip install {requirements} failed: {done.stderr[-2000:]}"
            marker.write_text(wanted)
    return root / "bin"
