"""Where a remote command finds its server and token: `MLOPS_URL` with `MLOPS_TOKEN` (and
`MLOPS_CA_BUNDLE`, `MLOPS_ALLOW_HTTP`), or the credentials file `mlops login` writes (mode
0600; `MLOPS_CREDENTIALS` names another)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from mlops.errors import InvalidInput
from mlops.remote.http import Remote

CREDENTIALS_ENV = "MLOPS_CREDENTIALS"
FILE_MAX = 64 << 10


def credentials_path() -> Path:
    named = os.environ.get(CREDENTIALS_ENV)
    if named:
        return Path(named)
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "mlops" / "credentials.json"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def from_environment(url: str | None = None) -> Remote | None:
    """The server named by `url` or `MLOPS_URL`, with the token and CA of the environment
    (the saved ones when they were saved for that same URL); None when no server is named."""
    url = url or os.environ.get("MLOPS_URL") or None
    if url is None:
        return None
    saved = load_saved()
    same = saved is not None and saved.url.rstrip("/") == url.rstrip("/")
    return Remote(
        url=url,
        token=os.environ.get("MLOPS_TOKEN") or (saved.token if same and saved else None),
        ca_file=os.environ.get("MLOPS_CA_BUNDLE") or (saved.ca_file if same and saved else None),
        allow_http=_flag("MLOPS_ALLOW_HTTP") or bool(same and saved and saved.allow_http),
    )


def load_saved() -> Remote | None:
    """What `mlops login` saved; None when nothing was."""
    path = credentials_path()
    try:
        raw = path.read_bytes()[: FILE_MAX + 1]
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(raw)
        return Remote(
            url=str(data["url"]),
            token=str(data["token"]) if data.get("token") else None,
            ca_file=str(data["ca_bundle"]) if data.get("ca_bundle") else None,
            allow_http=bool(data.get("allow_http", False)),
        )
    except (ValueError, KeyError, TypeError):
        raise InvalidInput(f"{path} is not a credentials file: `mlops login` again") from None


def save(remote: Remote) -> Path:
    """Write the credentials file, readable by its owner alone."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {
        "url": remote.url,
        "token": remote.token,
        "ca_bundle": remote.ca_file,
        "allow_http": remote.allow_http,
    }
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)
    return path


def forget() -> bool:
    """Remove the credentials file; whether there was one."""
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True
