"""The remote CLI and Client over TLS, signing in and out, and where a token may not go."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops import Client, StoreUnavailable
from mlops.errors import DependencyFailed
from tests.server import Cli, Server, running_server
from tests.tls import make_tls


@pytest.fixture
def tls_server(
    store_url: str, home: Path, tmp_path: Path, model_files: dict[str, Path]
) -> Iterator[tuple[Server, dict[str, Path], str]]:
    files = make_tls(tmp_path)
    with Client(store_url, home=home) as client:
        client.register("m", model_files["onnx"])
        client.deploy("api", model="m:1")
        secret = client._service.create_token("ops", role="operator").secret
    tls = ("--tls-cert", str(files["cert"]), "--tls-key", str(files["key"]))
    with running_server(store_url, home, "--no-gateway", *tls) as server:
        assert server.url.startswith("https://")
        yield server, files, secret


def remote_env(tmp_path: Path, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return {**env, "MLOPS_CREDENTIALS": str(tmp_path / "cred" / "credentials.json"), **more}


def test_the_remote_cli_trusts_the_servers_ca_bundle_and_nothing_else(
    tls_server: tuple[Server, dict[str, Path], str], tmp_path: Path
) -> None:
    server, files, secret = tls_server
    env = remote_env(tmp_path, MLOPS_URL=server.url, MLOPS_TOKEN=secret)
    refused = Cli(env)("status", "api", code=6).stderr
    assert "TLS certificate is not trusted" in refused
    trusted = Cli({**env, "MLOPS_CA_BUNDLE": str(files["ca"])})
    status = trusted.json("status", "api")
    assert isinstance(status, dict)
    assert status["revision"] == 1


def test_login_saves_a_private_credentials_file_that_later_commands_use(
    tls_server: tuple[Server, dict[str, Path], str], tmp_path: Path
) -> None:
    server, files, secret = tls_server
    cli = Cli(remote_env(tmp_path, MLOPS_TOKEN=secret))
    out = cli("login", server.url, "--ca-bundle", str(files["ca"])).stdout
    assert "signed in" in out
    assert "1 deployment visible" in out
    saved = tmp_path / "cred" / "credentials.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert secret not in out
    later = Cli(remote_env(tmp_path))  # no URL, no token: the saved ones
    assert later.json("status", "api")["revision"] == 1  # type: ignore[index]
    assert "signed out" in later("logout").stdout
    assert not saved.exists()


def test_a_wrong_token_is_not_saved(
    tls_server: tuple[Server, dict[str, Path], str], tmp_path: Path
) -> None:
    server, files, _ = tls_server
    cli = Cli(remote_env(tmp_path, MLOPS_TOKEN="mlops_0123456789ab_" + "A" * 43))
    err = cli("login", server.url, "--ca-bundle", str(files["ca"]), code=7).stderr
    assert "invalid token" in err
    assert not (tmp_path / "cred" / "credentials.json").exists()


def test_a_token_never_goes_over_plain_http_to_another_host(tmp_path: Path) -> None:
    # Refused before any connection is made: nothing is sent to this address.
    env = remote_env(tmp_path, MLOPS_URL="http://192.0.2.1:8000", MLOPS_TOKEN="mlops_x")
    err = Cli(env)("status", code=5).stderr
    assert "refusing to send a token over plain HTTP to 192.0.2.1" in err


def test_local_only_commands_refuse_a_server_url(tmp_path: Path) -> None:
    cli = Cli(remote_env(tmp_path))
    for command in ("serve", "controller"):
        err = cli("--url", "https://127.0.0.1:1", command, code=5).stderr
        assert f"`mlops {command}` runs on this machine" in err


def test_the_client_takes_a_url_token_and_ca_bundle(
    tls_server: tuple[Server, dict[str, Path], str],
) -> None:
    server, files, secret = tls_server
    with Client(url=server.url, token=secret, ca_bundle=files["ca"]) as client:
        assert client.status("api")[0].revision == 1
        assert [v.version for v in client.versions("m")] == [1]
    with Client(url=server.url, token=secret) as untrusting, pytest.raises(DependencyFailed):
        untrusting.status()
    with Client(url="http://127.0.0.1:1", token=secret) as nowhere, pytest.raises(StoreUnavailable):
        nowhere.models()
