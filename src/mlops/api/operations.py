"""The operations of the control API: one handler each, and the table (`OPERATIONS`) that both
the router and the OpenAPI document are built from. Each handler checks who calls first,
then reads its body, then calls the service once, in a worker thread."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from mlops.api.auth import authorize, control
from mlops.api.bodies import (
    BODY_MAX,
    DataBody,
    DeployBody,
    PromoteBody,
    QuarantineBody,
    RequestBody,
    RevokeBody,
    RollbackBody,
    TokenBody,
    TrafficBody,
)
from mlops.api.stream import shown_to, stream
from mlops.api.upload import register
from mlops.core.access import EVERY, Identity, Need
from mlops.core.refs import ComponentRef, check_name, parse_component, parse_ref, parse_version
from mlops.core.resources import one_location
from mlops.errors import InvalidInput
from mlops.gateway.http import json_response
from mlops.rollout_spec import RolloutFile, load_spec, spec_from_text
from mlops.service import HISTORY_LIMIT, LIST_MAX, Service
from mlops.service.authn import actor_of
from mlops.web.body import read_body

MOUNT = "/api"
"""Where the control API is mounted; its routes are below `MOUNT + VERSION`."""
VERSION = "/v1"
ERRORS_SHOWN = 3

B = TypeVar("B", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler
    need: Need | None
    summary: str
    body: type[BaseModel] | None = None
    query: tuple[str, ...] = ()


async def body_of(request: Request, model: type[B]) -> B:
    raw = await read_body(request, BODY_MAX)
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        shown = [
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
            for e in exc.errors()[:ERRORS_SHOWN]
        ]
        raise InvalidInput(f"invalid body: {'; '.join(shown)}") from None


def query_int(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or not 1 <= int(raw) <= top:
        raise InvalidInput(f"{name} must be a whole number from 1 to {top}")
    return int(raw)


def deployment_param(request: Request) -> str:
    return check_name(request.path_params["deployment"], "deployment")


def ok(value: Any, status: int = 200) -> Response:
    if isinstance(value, list):
        return json_response([v.to_dict() for v in value], status)
    return json_response(value.to_dict() if hasattr(value, "to_dict") else value, status)


async def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


# Reads


async def list_models(request: Request) -> Response:
    await authorize(request, "read")
    return ok(await call(control(request).service.models))


async def list_versions(request: Request) -> Response:
    await authorize(request, "read")
    model = check_name(request.path_params["model"], "model")
    limit = query_int(request, "limit", 50, LIST_MAX)
    return ok(await call(control(request).service.versions, model, limit=limit))


async def list_deployments(request: Request) -> Response:
    who = await authorize(request, "read")
    found = await call(control(request).service.status)
    return ok([s for s in found if who.covers(s.deployment)])


async def get_deployment(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    return ok((await call(control(request).service.status, name))[0])


async def get_history(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    limit = query_int(request, "limit", HISTORY_LIMIT, LIST_MAX)
    before = request.query_params.get("before")
    page = parse_version(before, "before") if before is not None else None
    return ok(await call(control(request).service.history, name, limit=limit, before=page))


async def get_events(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    limit = query_int(request, "limit", 50, LIST_MAX)
    return ok(await call(control(request).service.events, name, limit=limit))


async def list_events(request: Request) -> Response:
    who = await authorize(request, "read")
    limit = query_int(request, "limit", 50, LIST_MAX)
    found = await call(control(request).service.events, None, limit=limit)
    return ok([e for e in found if shown_to(who, e)])


async def get_measurements(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    window = float(query_int(request, "window_s", 60, 7 * 86_400))
    return ok(await call(control(request).service.measurements, name, window_s=window))


async def get_data(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    return ok(await call(control(request).service.data, name))


async def get_snapshots(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "read", name)
    return ok(await call(control(request).service.snapshots, name))


# Releases and rollouts


def _components(body: DeployBody) -> dict[str, ComponentRef]:
    return dict(parse_component(f"{k}={v}") for k, v in body.components.items())


def _spec(body: DeployBody) -> RolloutFile:
    if isinstance(body.rollout, str):
        return spec_from_text(body.rollout, "the rollout spec", strategy=body.strategy)
    if body.rollout is not None:
        return load_spec(body.rollout, strategy=body.strategy)
    return load_spec(strategy=body.strategy or "direct")


async def steering(request: Request, model: type[B]) -> tuple[str, Identity, B]:
    """The deployment, the caller (who must operate it), and the body; `force` needs an
    admin."""
    name = deployment_param(request)
    who = await authorize(request, "operate", name)
    body = await body_of(request, model)
    if getattr(body, "force", False):
        await authorize(request, "admin", name)
    return name, who, body


async def deploy(request: Request) -> Response:
    name, who, body = await steering(request, DeployBody)
    if body.migration is not None:
        await authorize(request, "run_code", name)
    result = await call(
        control(request).service.deploy,
        name,
        model=parse_ref(body.model) if body.model else None,
        components=_components(body),
        remove=frozenset(body.remove),
        force=body.force,
        reason=body.reason,
        actor=actor_of(who),
        rollout=_spec(body),
        migration=body.migration,
        data=tuple(body.data),
        dry_run=body.dry_run,
    )
    return ok(result, 200 if body.dry_run else 201)


def rollback_with(service: Service, name: str, who: Identity, body: RollbackBody) -> Any:
    return service.rollback(
        name,
        version=body.version,
        revision=body.revision,
        component=body.component,
        reason=body.reason,
        force=body.force,
        actor=actor_of(who),
        dry_run=body.dry_run,
    )


def traffic_with(service: Service, name: str, who: Identity, body: TrafficBody) -> Any:
    return service.set_traffic(
        name,
        body.weights,
        shadows=body.shadows,
        force=body.force,
        reason=body.reason,
        actor=actor_of(who),
    )


def command_with(
    service: Service, name: str, who: Identity, kind: str, body: RequestBody
) -> dict[str, Any]:
    asked = "promote_full" if isinstance(body, PromoteBody) and body.full else kind
    command = service.request(name, asked, reason=body.reason, actor=actor_of(who))
    return {"command": command, "kind": asked, "deployment": name}


def quarantine_with(
    service: Service, ref: ComponentRef, who: Identity, body: QuarantineBody
) -> Any:
    return service.quarantine(ref, reason=body.reason, lift=body.lift, actor=actor_of(who))


async def rollback(request: Request) -> Response:
    name, who, body = await steering(request, RollbackBody)
    result = await call(rollback_with, control(request).service, name, who, body)
    return ok(result, 200 if body.dry_run else 201)


async def traffic(request: Request) -> Response:
    name, who, body = await steering(request, TrafficBody)
    return ok(await call(traffic_with, control(request).service, name, who, body))


def _command(kind: str, model: type[RequestBody] = RequestBody) -> Handler:
    async def handler(request: Request) -> Response:
        name = deployment_param(request)
        who = await authorize(request, "operate", name)
        body = await body_of(request, model)
        return ok(await call(command_with, control(request).service, name, who, kind, body), 202)

    handler.__name__ = kind
    return handler


async def quarantine(request: Request) -> Response:
    # A quarantine holds the version back from every deployment: not for a scoped operator.
    who = await authorize(request, "operate", EVERY)
    model = check_name(request.path_params["model"], "model")
    version = parse_version(request.path_params["version"])
    body = await body_of(request, QuarantineBody)
    if body.lift:
        await authorize(request, "admin")
    ref = ComponentRef(model, version)
    return ok(await call(quarantine_with, control(request).service, ref, who, body))


async def add_data(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "run_code", name)  # it names paths and servers of this host's
    body = await body_of(request, DataBody)
    driver, location = one_location(
        sqlite=body.sqlite, postgresql=body.postgresql, directory=body.directory
    )
    added = await call(
        control(request).service.add_data,
        name,
        body.name,
        driver=driver,
        location=location,
        policy=body.policy,
        keep_last=body.keep_last,
        max_age_s=body.max_age_s,
    )
    return ok(added, 201)


async def remove_data(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "run_code", name)
    resource = check_name(request.path_params["name"], "data resource")
    await call(control(request).service.remove_data, name, resource)
    return ok({"deployment": name, "removed": resource})


async def restore_data(request: Request) -> Response:
    name = deployment_param(request)
    await authorize(request, "operate", name)
    return ok(await call(control(request).service.put_back_due, name))


# Tokens


async def list_tokens(request: Request) -> Response:
    await authorize(request, "admin")
    return ok(await call(control(request).service.tokens))


async def create_token(request: Request) -> Response:
    who = await authorize(request, "admin")
    body = await body_of(request, TokenBody)
    created = await call(
        control(request).service.create_token,
        body.name,
        role=body.role,
        deployments=body.deployments,
        scopes=body.scopes,
        expires_in_s=body.expires_in_s,
        reason=body.reason,
        actor=actor_of(who),
    )
    return ok(created, 201)


async def revoke_token(request: Request) -> Response:
    who = await authorize(request, "admin")
    body = await body_of(request, RevokeBody)
    name = request.path_params["name"]
    revoked = await call(
        control(request).service.revoke_token, name, reason=body.reason, actor=actor_of(who)
    )
    return ok(revoked)


D = "/deployments/{deployment}"
OPERATIONS: Sequence[Operation] = (
    Operation("GET", "/models", list_models, "read", "List models"),
    Operation(
        "GET", "/models/{model}/versions", list_versions, "read", "List versions", query=("limit",)
    ),
    Operation(
        "POST",
        "/models/{model}/versions",
        register,
        "operate",
        "Register a version: the body is the artifact (a tar archive for a folder), "
        "X-Content-SHA256 its digest; trust=true needs admin",
        query=("flavor", "trust", "tag"),
    ),
    Operation(
        "POST",
        "/models/{model}/versions/{version}/quarantine",
        quarantine,
        "operate",
        "Quarantine a version, or lift it (admin)",
        QuarantineBody,
    ),
    Operation("GET", "/deployments", list_deployments, "read", "Status of every deployment"),
    Operation("GET", D, get_deployment, "read", "Status of a deployment"),
    Operation("GET", f"{D}/history", get_history, "read", "Releases", query=("limit", "before")),
    Operation("GET", f"{D}/events", get_events, "read", "Events", query=("limit",)),
    Operation(
        "GET", f"{D}/measurements", get_measurements, "read", "Measurements", query=("window_s",)
    ),
    Operation("GET", f"{D}/data", get_data, "read", "Data resources"),
    Operation("GET", f"{D}/snapshots", get_snapshots, "read", "Data snapshots"),
    Operation("POST", f"{D}/data", add_data, "run_code", "Declare a data resource", DataBody),
    Operation(
        "POST",
        f"{D}/data/restore",
        restore_data,
        "operate",
        "Finish the restores a rollback left due, and recover an interrupted deploy's data",
    ),
    Operation(
        "POST", f"{D}/data/{{name}}/remove", remove_data, "run_code", "Forget a data resource"
    ),
    Operation("POST", f"{D}/deploy", deploy, "operate", "Deploy a release", DeployBody),
    Operation("POST", f"{D}/rollback", rollback, "operate", "Roll back", RollbackBody),
    Operation("POST", f"{D}/traffic", traffic, "operate", "Split traffic", TrafficBody),
    Operation(
        "POST",
        f"{D}/promote",
        _command("promote", PromoteBody),
        "operate",
        "Promote a step, or fully",
        PromoteBody,
    ),
    Operation("POST", f"{D}/abort", _command("abort"), "operate", "Abort a rollout", RequestBody),
    Operation("POST", f"{D}/pause", _command("pause"), "operate", "Pause a rollout", RequestBody),
    Operation(
        "POST", f"{D}/resume", _command("resume"), "operate", "Resume a rollout", RequestBody
    ),
    Operation(
        "GET", "/events", list_events, "read", "Events of every deployment", query=("limit",)
    ),
    Operation(
        "GET",
        "/stream",
        stream,
        "read",
        "Server-sent events: new events and rollout progress (?deployment=, Last-Event-ID)",
        query=("deployment",),
    ),
    Operation("GET", "/tokens", list_tokens, "admin", "List API tokens"),
    Operation("POST", "/tokens", create_token, "admin", "Create an API token", TokenBody),
    Operation(
        "POST", "/tokens/{name}/revoke", revoke_token, "admin", "Revoke an API token", RevokeBody
    ),
)
