"""The control API on a real `mlops serve`: every route against every kind of caller (API
tokens, and JWTs of an identity provider: `tests/jwts.py`), each refusal changing nothing but
the record of the denial; actors are the authenticated tokens;
failed attempts are limited per client address; a revoked token stops on every worker."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import MetaData, create_engine, select

from mlops import Client
from mlops.api.openapi import document
from mlops.api.operations import MOUNT, OPERATIONS, VERSION, Operation
from tests import jwts
from tests.jwts import Claims
from tests.server import Server, eventually, running_server

ROOT = Path(__file__).resolve().parents[2]
BAD = ("none", "malformed", "wrong", "expired", "revoked", "jwt-expired", "jwt-forged", "jwt-aud")
RANK = {"viewer": 1, "op-in": 2, "op-out": 2, "admin": 3}
RANK |= {"jwt-nobody": 0, "jwt-viewer": 1, "jwt-op-in": 2, "jwt-op-out": 2, "jwt-admin": 3}
NEED_RANK = {"read": 1, "operate": 2, "run_code": 3, "admin": 3}
BODIES: dict[str, dict[str, Any]] = {
    "deploy": {"model": "m:2", "strategy": "canary"},
    "rollback": {"version": 1},
    "traffic": {"weights": {"1": 100}},
    "create_token": {"name": "made", "role": "viewer"},
    "add_data": {"name": "features", "sqlite": "/tmp/features.db"},
}
_addresses = itertools.count(1)


def fresh_address() -> str:
    """A client address of its own (the server trusts 127.0.0.1 as a proxy), so that the
    failure limit of one address never decides a test that is not about it."""
    n = next(_addresses)
    return f"10.9.{n // 250}.{n % 250 + 1}"


@dataclass
class Api:
    server: Server
    client: Client
    store_url: str
    secrets: dict[str, str]

    def call(
        self,
        method: str,
        path: str,
        who: str | None = None,
        body: dict[str, Any] | None = None,
        address: str | None = None,
    ) -> httpx.Response:
        headers = {"x-forwarded-for": address or fresh_address()}
        if who is not None and who != "none":
            headers["authorization"] = f"Bearer {self.secrets[who]}"
        with self.server.client() as http:
            return http.request(method, MOUNT + VERSION + path, json=body, headers=headers)

    def stream_status(self, who: str) -> int:
        """The status of `GET /stream` (the stream itself is left at once)."""
        headers = {"authorization": f"Bearer {self.secrets[who]}"}
        with (
            self.server.client() as http,
            http.stream("GET", f"{MOUNT}{VERSION}/stream", headers=headers) as response,
        ):
            return response.status_code


def store_dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, but the denials in the event history and the controller's
    lease (renewed as it ticks)."""
    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            if name == "leases":
                continue
            rows = [tuple(r) for r in conn.execute(select(table))]
            if name == "events":
                rows = [r for r in rows if r[2] != "access_denied"]
            out[name] = sorted(rows, key=repr)
    engine.dispose()
    return out


@pytest.fixture
def api(store_url: str, home: Path, model_files: dict[str, Path]) -> Iterator[Api]:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.register("m", model_files["onnx"])
        client.deploy("api", model="m:1")
        client.deploy("other", model="m:1")
        svc = client._service
        secrets = {
            "viewer": svc.create_token("viewer", role="viewer").secret,
            "op-in": svc.create_token("op-in", role="operator", deployments="api").secret,
            "op-out": svc.create_token("op-out", role="operator", deployments="oth*").secret,
            "admin": svc.create_token("admin", role="admin").secret,
            "expired": svc.create_token("expired", role="admin", expires_in_s=0.001).secret,
            "revoked": svc.create_token("revoked", role="admin").secret,
            "malformed": "mlops_not-a-token",
        }
        svc.revoke_token("revoked")
        admin = secrets["admin"]
        secrets["wrong"] = admin[:-2] + ("xy" if not admin.endswith("xy") else "zz")
        secrets |= sso_callers()
        keys = jwts.write_jwks(home / "jwks.json", jwts.default_keys())
        sso = jwts.sso_args(keys)
        with running_server(store_url, home, "--trusted-proxy", "127.0.0.1", *sso) as server:
            yield Api(server, client, store_url, secrets)


def sso_callers() -> dict[str, str]:
    """Bearer JWTs of the identity provider the `api` server trusts (`tests/jwts.py`)."""

    def mint(*groups: str, **claims: Any) -> str:
        return jwts.mint(Claims(groups=list(groups), **claims))

    return {
        "jwt-nobody": mint("unmapped"),
        "jwt-viewer": mint("ml-viewers"),
        "jwt-op-in": jwts.mint(Claims(groups=["ml-ops"]), kid="ec-1"),
        "jwt-op-out": mint("ml-ops-other", "ml-predict"),
        "jwt-admin": mint("ml-viewers", "ml-admins"),
        "jwt-expired": mint("ml-admins", exp_in=-120, iat_in=-3600),
        "jwt-forged": jwts.flipped(mint("ml-admins")),
        "jwt-aud": mint("ml-admins", aud="another-app"),
    }


def concrete(op: Operation) -> str:
    return op.path.format(deployment="api", model="m", version="1", name="nobody")


def expected(op: Operation, who: str) -> int | None:
    """401 or 403 for a refusal; None where the caller may."""
    if who in BAD:
        return 401
    assert op.need is not None
    if RANK[who] < NEED_RANK[op.need]:
        return 403
    if who.endswith("op-out") and "{deployment}" in op.path:
        return 403
    if "op-" in who and op.handler.__name__ == "quarantine":
        return 403  # model-wide: only an operator whose glob covers every deployment
    return None


def test_every_route_refuses_whom_it_must_and_changes_nothing(api: Api) -> None:
    before = store_dump(api.store_url)
    seen = 0
    for op in OPERATIONS:
        for who in (*BAD, *RANK):
            status = expected(op, who)
            if status is None:
                if op.path == "/stream":
                    assert api.stream_status(who) == 200
                elif op.method == "GET":
                    response = api.call(op.method, concrete(op), who)
                    assert response.status_code == 200, (op.path, who, response.text)
                continue
            response = api.call(op.method, concrete(op), who, BODIES.get(op.handler.__name__))
            assert response.status_code == status, (op.path, who, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            problem = response.json()
            assert problem["exit_code"] == 7
            assert problem["kind"] == ("Unauthenticated" if status == 401 else "Forbidden")
            seen += 1
    assert seen > 3 * len(OPERATIONS)
    assert store_dump(api.store_url) == before


def test_a_refusal_is_recorded_with_who_what_and_from_where(api: Api) -> None:
    response = api.call("POST", "/deployments/api/rollback", "viewer", {"version": 1}, "10.1.2.3")
    assert response.status_code == 403
    assert response.json()["detail"] == "token 'viewer' has role viewer; this needs operator"
    anonymous = api.call("GET", "/deployments/api", None, None, "10.1.2.4")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="mlops"'
    denied = [e for e in api.client.events("api", limit=10) if e.action == "access_denied"]
    assert [(e.actor, e.actor_source, e.details["client"], e.details["path"]) for e in denied] == [
        ("anonymous", "anonymous", "10.1.2.4", "/api/v1/deployments/api"),
        ("token:viewer", "token", "10.1.2.3", "/api/v1/deployments/api/rollback"),
    ]
    metrics = httpx.get(f"{api.server.url}/metrics").text
    assert 'mlops_access_denied_total{status="403"}' in metrics


def test_the_actor_of_every_change_is_the_token_never_a_claimed_name(api: Api) -> None:
    deployed = api.call("POST", "/deployments/api/deploy", "op-in", {"model": "m:2"})
    assert deployed.status_code == 201, deployed.text
    assert deployed.json()["revision"] == 2
    back = api.call("POST", "/deployments/api/rollback", "op-in", {"version": 1, "reason": "r"})
    assert back.status_code == 201, back.text
    assert (back.json()["revision"], back.json()["source_revision"]) == (3, 1)
    actors = {(e.action, e.actor, e.actor_source) for e in api.client.events("api", limit=5)}
    assert ("deploy", "token:op-in", "token") in actors
    assert ("rollback", "token:op-in", "token") in actors
    status = api.call("GET", "/deployments/api", "op-in").json()
    assert status["revision"] == 3


def test_force_and_migrations_need_an_admin(api: Api) -> None:
    forced = api.call("POST", "/deployments/api/deploy", "op-in", {"model": "m:2", "force": True})
    assert forced.status_code == 403, forced.text
    migrating = {"model": "m:2", "migration": "os:system"}
    refused = api.call("POST", "/deployments/api/deploy", "op-in", migrating)
    assert refused.status_code == 403, refused.text
    lift = api.call("POST", "/models/m/versions/1/quarantine", "op-in", {"lift": True})
    assert lift.status_code == 403, lift.text
    assert api.client.status("api")[0].revision == 1


def test_bad_bodies_are_refused_with_a_clear_message(api: Api) -> None:
    cases: list[tuple[Any, str]] = [
        ({"version": 1, "extra": 1}, "extra: Extra inputs are not permitted"),
        ({"version": 0}, "version: Input should be greater than or equal to 1"),
        ({"version": "x"}, "version: Input should be a valid integer"),
    ]
    for body, message in cases:
        response = api.call("POST", "/deployments/api/rollback", "admin", body)
        assert response.status_code == 400, response.text
        assert message in response.json()["detail"]
    laughs = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
        f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    bomb = api.call("POST", "/deployments/api/deploy", "admin", {"model": "m:2", "rollout": laughs})
    assert bomb.status_code == 400, bomb.text
    assert bomb.json()["kind"] == "DocumentRefused"
    deep = '{"model": "m:2", "rollout": ' + '{"x": ' * 20_000 + "{}" + "}" * 20_001
    with api.server.client() as http:
        nested = http.post(
            f"{MOUNT}{VERSION}/deployments/api/deploy",
            content=deep.encode(),
            headers={"authorization": f"Bearer {api.secrets['admin']}"},
        )
    assert nested.status_code == 400, nested.text
    with api.server.client() as http:
        headers = {"authorization": f"Bearer {api.secrets['admin']}"}
        raw = http.post(f"{MOUNT}{VERSION}/deployments/api/rollback", content=b"{", headers=headers)
        assert raw.status_code == 400
        huge = http.post(
            f"{MOUNT}{VERSION}/deployments/api/rollback", content=b" " * 300_000, headers=headers
        )
        assert huge.status_code == 413
        odd = http.get(f"{MOUNT}{VERSION}/deployments/..%2fx", headers=headers)
        assert odd.status_code in (400, 404)
    assert api.client.status("api")[0].revision == 1


def test_failed_attempts_are_limited_per_client_address(api: Api) -> None:
    statuses: list[int] = []
    response = None
    while 429 not in statuses and len(statuses) < 200:  # 20 at once, then 1 a second
        response = api.call("GET", "/models", "wrong", address="10.7.7.7")
        statuses.append(response.status_code)
    assert response is not None
    assert statuses[-1] == 429
    assert statuses.index(429) >= 20
    assert set(statuses[:-1]) == {401}
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["kind"] == "TooManyAttempts"
    assert api.call("GET", "/models", "admin", address="10.7.7.8").status_code == 200


def test_the_openapi_document_is_served_and_kept_in_docs() -> None:
    kept = json.loads((ROOT / "docs" / "openapi.json").read_text())
    assert kept == document(), "regenerate: python -m mlops.api.openapi > docs/openapi.json"
    paths = {(m.upper(), p) for p, item in kept["paths"].items() for m in item}
    assert paths == {(op.method, MOUNT + VERSION + op.path) for op in OPERATIONS}


def test_a_revoked_token_stops_on_every_worker(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.deploy("api", model="m:1")
        secret = client._service.create_token("soon-gone", role="viewer").secret
        with running_server(store_url, home, "--workers", "2") as server:
            headers = {"authorization": f"Bearer {secret}"}

            def statuses() -> set[int]:
                # A new connection each time: the kernel spreads them over both workers.
                return {
                    httpx.get(f"{server.url}/api/v1/models", headers=headers).status_code
                    for _ in range(12)
                }

            assert eventually(statuses, lambda s: s == {200}) == {200}
            client._service.revoke_token("soon-gone")
            # Stopped: no more 200 from any worker (401s, then 429 as the failures add up).
            assert 200 not in eventually(statuses, lambda s: 200 not in s)


def test_predictions_need_a_predict_token_only_when_asked(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    body = {"instances": [[0.1, -0.2, 0.3, 0.4, -0.5, 0.6]]}
    with Client(store_url, home=home) as client:
        client.register("m", model_files["skops"])
        client.deploy("api", model="m:1")
        caller = client._service.create_token("caller", role=None, scopes=["predict"]).secret
        labeller = client._service.create_token("labeller", role=None, scopes=["feedback"]).secret
        with running_server(store_url, home) as server, server.client() as http:
            assert http.post("/v1/models/api:predict", json=body).status_code == 200
        with running_server(store_url, home, "--predict-token") as server, server.client() as http:
            refused = http.post("/v1/models/api:predict", json=body)
            assert refused.status_code == 401
            assert "token" in refused.json()["error"]
            wrong = {"authorization": f"Bearer {labeller}"}
            assert http.post("/v1/models/api:predict", json=body, headers=wrong).status_code == 403
            right = {"authorization": f"Bearer {caller}"}
            assert http.post("/v1/models/api:predict", json=body, headers=right).status_code == 200
            v2 = {
                "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 6], "data": [0] * 6}]
            }
            assert http.post("/v2/models/api/infer", json=v2).status_code == 401
            assert http.post("/v2/models/api/infer", json=v2, headers=right).status_code == 200


def test_the_stream_tells_new_events_and_rollout_progress_to_whom_it_may(api: Api) -> None:
    headers = {"authorization": f"Bearer {api.secrets['op-in']}"}
    frames: list[str] = []
    with (
        api.server.client() as http,
        http.stream("GET", f"{MOUNT}{VERSION}/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        api.client.deploy("other", model="m:2", reason="not for op-in")
        api.client.deploy("api", model="m:2", strategy="canary", reason="for op-in")
        kind = ""
        for line in response.iter_lines():
            frames.append(line)
            kind = line[7:] if line.startswith("event: ") else kind
            if kind == "rollout" and line.startswith("data: "):
                break
    events = [json.loads(f[6:]) for f in frames if f.startswith("data: ")]
    assert [e["deployment"] for e in events] == ["api", "api"]  # "other" is not op-in's
    assert events[0]["action"] == "rollout"
    assert events[1]["rollout"]["candidate_revision"] == 2
    ids = [f for f in frames if f.startswith("id: ")]
    assert len(ids) == 1  # events carry their id, to resume with Last-Event-ID


def _upload(
    api: Api,
    who: str,
    body: bytes,
    *,
    query: str = "",
    sha: str | None = None,
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    import hashlib

    headers = {
        "authorization": f"Bearer {api.secrets[who]}",
        "x-content-sha256": sha if sha is not None else hashlib.sha256(body).hexdigest(),
        "content-type": content_type,
        "x-forwarded-for": fresh_address(),
    }
    with api.server.client() as http:
        return http.post(
            f"{MOUNT}{VERSION}/models/up/versions{query}", content=body, headers=headers
        )


def _tar(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return buffer.getvalue()


def test_a_version_is_registered_by_upload_checked_against_its_digest(
    api: Api, model_files: dict[str, Path], tmp_path: Path
) -> None:
    onnx = model_files["onnx"].read_bytes()
    wrong = _upload(api, "op-in", onnx, sha="0" * 64)
    assert wrong.status_code == 400
    assert wrong.json()["kind"] == "IntegrityError"
    assert _upload(api, "op-in", onnx, sha="").status_code == 400
    made = _upload(api, "op-in", onnx, query="?tag=team=risk")
    assert made.status_code == 201, made.text
    assert (made.json()["model"], made.json()["version"], made.json()["flavor"]) == (
        "up",
        1,
        "onnx",
    )
    assert made.json()["tags"] == {"team": "risk"}

    pickle = model_files["joblib"].read_bytes()
    untrusted = _upload(api, "op-in", pickle)
    assert untrusted.status_code == 400
    assert untrusted.json()["kind"] == "UntrustedArtifact"
    assert _upload(api, "op-in", pickle, query="?trust=true").status_code == 403
    assert _upload(api, "admin", pickle, query="?trust=true").status_code == 201

    folder = model_files["mlflow"]
    files = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    archived = _upload(
        api, "admin", _tar(files), query="?trust=true", content_type="application/x-tar"
    )
    assert archived.status_code == 201, archived.text
    assert archived.json()["flavor"] == "mlflow"
    assert [v.version for v in api.client.versions("up")] == [3, 2, 1]


def test_an_archive_whose_entries_would_leave_it_is_refused(api: Api, home: Path) -> None:
    escape = home.parent / "escaped.txt"
    for archive, why in [
        (_tar({"../escaped.txt": b"x"}), "would land outside"),
        (_tar({"/tmp/escaped.txt": b"x"}), "would land outside"),
        (_tar({"MLmodel": b"x"}, links={"link": "/etc/passwd"}), "not a file or a folder"),
        (b"not a tar at all" * 100, "not a readable tar archive"),
    ]:
        response = _upload(api, "admin", archive, content_type="application/x-tar")
        assert response.status_code == 400, response.text
        assert why in response.json()["detail"]
    assert not escape.exists()
    assert "up" not in {m.name for m in api.client.models()}
    assert not list((home / "uploads").iterdir())  # staging copies are gone


def test_an_upload_past_the_limit_is_refused(
    store_url: str, home: Path, model_files: dict[str, Path]
) -> None:
    import hashlib

    with Client(store_url, home=home) as client:
        secret = client._service.create_token("op", role="operator").secret
        with running_server(store_url, home, "--max-upload-mb", "0.01") as server:
            body = model_files["onnx"].read_bytes() + b"\0" * 20_000
            headers = {
                "authorization": f"Bearer {secret}",
                "x-content-sha256": hashlib.sha256(body).hexdigest(),
            }
            with server.client() as http:
                response = http.post("/api/v1/models/up/versions", content=body, headers=headers)
            assert response.status_code == 413
        assert client.models() == []
