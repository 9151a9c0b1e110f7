"""The dashboard's pages and actions. Each page is drawn on the server from the service's
reads; the parts that change live are fragments, pushed again by `live` when they change.
Actions go through the same functions as the control API's, with a confirmation page that
shows the API's dry run first."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import orjson
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from mlops.api.auth import control
from mlops.api.bodies import PromoteBody, QuarantineBody, RequestBody, RollbackBody, TrafficBody
from mlops.api.operations import command_with, quarantine_with, rollback_with, traffic_with
from mlops.api.stream import STREAMS_MAX, shown_to
from mlops.core.access import EVERY, Identity, refusal
from mlops.core.refs import ComponentRef, check_name, parse_version
from mlops.dashboard import charts
from mlops.dashboard.session import (
    PATH,
    check_change,
    clear_cookie,
    current,
    same_origin,
    set_cookie,
    sign_in,
)
from mlops.dashboard.shared import SharedReads
from mlops.errors import AccessDenied, InvalidInput, MlopsError, Overloaded, Unauthenticated
from mlops.records import iso
from mlops.service import Service
from mlops.service.dashboard import Series
from mlops.service.sessions import WebSession
from mlops.web.access import refusal_headers
from mlops.web.body import read_body

FORM_MAX = 16 * 1024
FIELDS_MAX = 64
POLL_S = 0.5
TICK_S = 0.1
KEEPALIVE_S = 15.0
EVENTS_SHOWN = 30
HISTORY_SHOWN = 50
COMMANDS = {
    "promote": "Promote to the next step",
    "promote_full": "Promote fully: the candidate becomes stable now",
    "abort": "Abort: traffic back to the stable release",
    "pause": "Pause the rollout at this step",
    "resume": "Resume the rollout",
}

env = Environment(
    loader=PackageLoader("mlops.dashboard", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
env.filters["iso"] = lambda d: (
    Markup('<time datetime="{}">{}</time>').format(iso(d), d.strftime("%Y-%m-%d %H:%M:%S UTC"))
    if d is not None
    else ""
)
DASH = "\N{EN DASH}"
env.filters["num"] = lambda v: DASH if v is None else (f"{v:.3g}" if isinstance(v, float) else v)
env.filters["pct"] = lambda v: DASH if v is None else f"{100 * v:.2f} %"

B = TypeVar("B", bound=BaseModel)
Page = Callable[[Request, WebSession], Awaitable[Response]]


SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def html(template: str, code: int = 200, **context: Any) -> HTMLResponse:
    body = env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=code, headers=SECURITY_HEADERS)


def error_page(exc: MlopsError, session: WebSession | None = None) -> HTMLResponse:
    who, csrf = (session.identity, session.csrf) if session is not None else (None, "")
    response = html("error.html", exc.http_status, error=exc, who=who, csrf=csrf)
    response.headers.update(refusal_headers(exc))
    return response


def _next_path(raw: str | None) -> str:
    """Where to go after signing in: a dashboard path of this server, nothing else."""
    if raw and raw.startswith(f"{PATH}/") and not raw.startswith("//") and "\\" not in raw:
        return raw
    return f"{PATH}/"


def page(view: Page) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a session: without one, the sign-in page (a proxy's JWT signs in on
    the way); its errors as a page of their own."""

    async def handler(request: Request) -> Response:
        try:
            session, made = await current(request)
        except Unauthenticated:
            target = urlencode({"next": request.url.path})
            return RedirectResponse(f"{PATH}/login?{target}", status_code=303)
        except MlopsError as exc:
            return error_page(exc)
        try:
            response = await view(request, session)
        except MlopsError as exc:
            response = error_page(exc, session)
        if made is not None:
            set_cookie(response, request, made, session)
        return response

    return handler


Change = Callable[[Request, WebSession, dict[str, str]], Awaitable[Response]]


def change(view: Change) -> Callable[[Request], Awaitable[Response]]:
    """A form that changes something: a signed-in session, its CSRF token in the form and a
    same-origin request first; its errors as a page of their own."""

    async def handler(request: Request) -> Response:
        try:
            session, _ = await current(request)
        except MlopsError as exc:
            return error_page(exc)
        try:
            fields = await form_of(request)
            check_change(request, session, fields.get("csrf"))
            return await view(request, session, fields)
        except MlopsError as exc:
            return error_page(exc, session)

    return handler


def may(who: Identity, need: str, deployment: str | None = None) -> bool:
    return refusal(who, need, deployment) is None  # type: ignore[arg-type]


def base(request: Request, session: WebSession, **context: Any) -> dict[str, Any]:
    return {"who": session.identity, "csrf": session.csrf, "path": request.url.path, **context}


async def form_of(request: Request) -> dict[str, str]:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InvalidInput("a form is sent as application/x-www-form-urlencoded")
    raw = await read_body(request, FORM_MAX)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the form is not UTF-8") from None
    try:
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=FIELDS_MAX)
    except ValueError:
        raise InvalidInput(f"a form has at most {FIELDS_MAX} fields") from None
    return {k: v[-1] for k, v in fields.items()}


# Sign-in


async def login_page(request: Request) -> Response:
    return html("login.html", next=_next_path(request.query_params.get("next")))


async def login(request: Request) -> Response:
    if not same_origin(request):
        return error_page(AccessDenied("cross-origin sign-in refused"))
    try:
        fields = await form_of(request)
    except MlopsError as exc:
        return error_page(exc)
    target = _next_path(fields.get("next"))
    secret = fields.get("token", "").strip()
    try:
        session, made = await sign_in(request, secret or "")
    except MlopsError as exc:
        response = html("login.html", exc.http_status, next=target, error=exc.message)
        response.headers.update(refusal_headers(exc))
        return response
    moved = RedirectResponse(target, status_code=303)
    set_cookie(moved, request, made, session)
    return moved


async def logout(request: Request, session: WebSession, fields: dict[str, str]) -> Response:
    await run_in_threadpool(control(request).service.end_session, session.id)
    response = RedirectResponse(f"{PATH}/login", status_code=303)
    clear_cookie(response)
    return response


# Reads


def reads(request: Request) -> SharedReads:
    found: SharedReads | None = getattr(request.app.state, "dashboard_reads", None)
    if found is None:
        found = request.app.state.dashboard_reads = SharedReads()
    return found


def overview_rows(service: Service) -> list[dict[str, Any]]:
    """Every deployment's row of the overview, as anyone may see it."""
    rows = []
    for e in service.overview():
        t = e.traffic
        rates = [r / t.bucket_s for r in t.requests]
        name = e.status.deployment
        rows.append(
            {
                "entry": e,
                "rps": t.rate(),
                "error_rate": t.total_errors / t.total_requests if t.total_requests else None,
                "p99": t.p99_recent(),
                "split": _split_text(e.split),
                "spark_rps": charts.sparkline(f"{name}: requests/s, last 5 minutes", rates),
                "spark_p99": charts.sparkline(f"{name}: p99 latency, last 5 minutes", t.p99_ms),
            }
        )
    return rows


def coverage(who: Identity) -> tuple[str, ...]:
    """The deployment globs that let `who` read: callers with the same see the same rows."""
    rights = [(who.role, who.deployments), *((g.role, g.deployments) for g in who.grants)]
    return tuple(sorted({glob for role, glob in rights if role is not None}))


def overview_parts(service: Service, shared: SharedReads, who: Identity) -> dict[str, str]:
    """The overview's live parts, drawn once per worker for everyone who sees the same rows."""
    seq = service.change_seq()
    everyone = shared.get("overview", seq, lambda: overview_rows(service))

    def draw() -> dict[str, str]:
        rows = [r for r in everyone if who.covers(r["entry"].status.deployment)]
        needs = [(r["entry"], why) for r in rows for why in r["entry"].attention]
        template, ids = FRAGMENTS["overview"]
        return fragments(template, ids, {"rows": rows, "needs": needs})

    found: dict[str, str] = shared.get(("overview", coverage(who)), seq, draw)
    return found


def _split_text(split: dict[str, Any] | None) -> str:
    if not split:
        return "100 % stable"
    weights = split.get("weights") or {}
    shown = [f"r{rev}: {float(w):g} %" for rev, w in weights.items()]
    shadows = split.get("shadows") or {}
    shown += [f"r{rev} shadow {float(w):g} %" for rev, w in shadows.items()]
    return ", ".join(shown) or "100 % stable"


async def overview(request: Request, session: WebSession) -> Response:
    service = control(request).service
    parts = await run_in_threadpool(overview_parts, service, reads(request), session.identity)
    live = f"{PATH}/live/overview"
    return html("overview.html", **base(request, session, live=live), parts=parts)


def deployment_data(service: Service, name: str) -> dict[str, Any]:
    """A deployment's page, as anyone who may read it sees it."""
    status = service.status(name)[0]
    story = service.rollout_story(name)
    return {
        "name": name,
        "status": status,
        "story": story,
        "check_charts": _check_charts(story.points) if story else [],
        "revision_charts": _revision_charts(service.revision_series(name)),
        "all_events": service.events(name, limit=EVENTS_SHOWN),
    }


def deployment_context(
    service: Service, shared: SharedReads, name: str, who: Identity
) -> dict[str, Any]:
    data = shared.get(("d", name), service.change_seq(), lambda: deployment_data(service, name))
    return {
        **data,
        "recent_events": [e for e in data["all_events"] if shown_to(who, e)],
        "can_operate": may(who, "operate", name),
    }


def _check_charts(points: list[tuple[Any, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per check: its e-value against the bound at which it fails, and its estimate with the
    anytime-valid interval against its limit, over the ticks since the rollout began."""
    names: list[str] = []
    for _, p in points:
        for c in p.get("checks", []):
            if c["name"] not in names:
                names.append(c["name"])
    out = []
    span = (_clock(points[0][0]), _clock(points[-1][0])) if points else None
    for name in names:
        rows = [_check(p, name) for _, p in points]
        last: dict[str, Any] = next((c for c in reversed(rows) if c is not None), {})

        def num(c: dict[str, Any] | None, key: str) -> float | None:
            v = c.get(key) if c else None
            return float(v) if isinstance(v, int | float) and math.isfinite(v) else None

        e_values = [num(c, "e_value") for c in rows]
        charts_of = []
        if any(v is not None for v in e_values):
            charts_of.append(
                charts.line_chart(
                    f"{name}: e-value (evidence the candidate is worse) against its threshold",
                    [charts.Line("e-value", e_values)],
                    threshold=num(last, "e_bound"),
                    threshold_name="fails at",
                    log=True,
                    span=span,
                )
            )
        estimates = [num(c, "estimate") for c in rows]
        if any(v is not None for v in estimates):
            band = [(num(c, "lower"), num(c, "upper")) for c in rows]
            charts_of.append(
                charts.line_chart(
                    f"{name}: estimate with its anytime-valid interval against its limit",
                    [charts.Line("estimate", estimates, band)],
                    threshold=num(last, "limit"),
                    threshold_name="limit",
                    span=span,
                )
            )
        out.append({"name": name, "last": last, "charts": charts_of})
    return out


def _check(point: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((c for c in point.get("checks", []) if c["name"] == name), None)


def _clock(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


def _revision_charts(series: dict[tuple[int, str], Series]) -> list[Markup]:
    """Requests, errors by kind and latency per revision, from the first bucket with traffic."""
    if not series:
        return []
    parts = list(series.values())
    first = min((next((i for i, r in enumerate(s.requests) if r), 0) for s in parts), default=0)
    s0 = parts[0]
    start = s0.start + timedelta(seconds=first * s0.bucket_s)
    span = (_clock(start), _clock(s0.start + timedelta(seconds=len(s0.requests) * s0.bucket_s)))
    named = [(f"r{rev} {role}", s) for (rev, role), s in series.items()]
    rate = [charts.Line(n, [r / s.bucket_s for r in s.requests[first:]]) for n, s in named]
    kinds = sorted({k for s in parts for e in s.errors for k in e})
    errors = [
        charts.Line(f"{n} {kind}", [e.get(kind, 0) / s.bucket_s for e in s.errors[first:]])
        for n, s in named
        for kind in kinds
    ]
    p50 = [charts.Line(f"{n} p50", s.p50_ms[first:]) for n, s in named]
    p99 = [charts.Line(f"{n} p99", s.p99_ms[first:]) for n, s in named]
    out = [charts.line_chart("Requests per second by revision", rate, span=span)]
    if errors:
        out.append(charts.line_chart("Errors per second by revision and kind", errors, span=span))
    out.append(
        charts.line_chart("Latency p50 and p99 by revision (ms)", p50 + p99, unit=" ms", span=span)
    )
    return out


async def deployment(request: Request, session: WebSession) -> Response:
    name = check_name(request.path_params["deployment"], "deployment")
    who = session.identity
    _need(who, "read", name)
    service = control(request).service
    context = await run_in_threadpool(deployment_context, service, reads(request), name, who)
    live = f"{PATH}/live/d/{name}"
    return html("deployment.html", **base(request, session, live=live), **context)


def history_context(service: Service, name: str, who: Identity) -> dict[str, Any]:
    return {
        "name": name,
        "releases": service.history(name, limit=HISTORY_SHOWN),
        "events": [e for e in service.events(name, limit=100) if shown_to(who, e)],
        "data": service.data(name),
        "snapshots": service.snapshots(name),
    }


async def history(request: Request, session: WebSession) -> Response:
    name = check_name(request.path_params["deployment"], "deployment")
    _need(session.identity, "read", name)
    context = await run_in_threadpool(
        history_context, control(request).service, name, session.identity
    )
    return html("history.html", **base(request, session), **context)


async def registry(request: Request, session: WebSession) -> Response:
    _need(session.identity, "read")
    models = await run_in_threadpool(control(request).service.models)
    return html("registry.html", **base(request, session), models=models)


async def versions(request: Request, session: WebSession) -> Response:
    _need(session.identity, "read")
    model = check_name(request.path_params["model"], "model")
    found = await run_in_threadpool(control(request).service.versions, model, limit=200)
    who = session.identity
    return html(
        "versions.html",
        **base(request, session),
        model=model,
        versions=found,
        can_quarantine=may(who, "operate", EVERY),
        can_lift=may(who, "admin"),
    )


def _need(who: Identity, need: str, deployment: str | None = None) -> None:
    why = refusal(who, need, deployment)  # type: ignore[arg-type]
    if why is not None:
        raise AccessDenied(why)


# Actions: a confirmation page with the dry run, then the change


def _body(model: type[B], values: dict[str, Any]) -> B:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        shown = [
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()[:3]
        ]
        raise InvalidInput("; ".join(shown)) from None


def _int(raw: str | None, what: str) -> int | None:
    if raw is None or raw == "":
        return None
    return parse_version(raw, what)


def action_body(action: str, fields: dict[str, str], *, dry_run: bool) -> BaseModel:
    reason = fields.get("reason") or None
    if action == "rollback":
        target = fields.get("target", "previous")
        values: dict[str, Any] = {"reason": reason, "dry_run": dry_run}
        if target in ("revision", "version"):
            values[target] = _int(fields.get("value"), target)
            if values[target] is None:
                raise InvalidInput(f"give the {target} to roll back to")
        elif target == "component":
            values["component"] = check_name(fields.get("value", ""), "component")
        elif target != "previous":
            raise InvalidInput("roll back to: previous, revision, version or component")
        return _body(RollbackBody, values)
    if action == "traffic":
        weights = {k[2:]: v for k, v in fields.items() if k.startswith("w.") and v != ""}
        return _body(TrafficBody, {"weights": weights, "reason": reason})
    if action in COMMANDS:
        model = PromoteBody if action == "promote_full" else RequestBody
        extra = {"full": True} if action == "promote_full" else {}
        return _body(model, {"reason": reason, **extra})
    raise InvalidInput(f"unknown action {action!r}")


def perform(service: Service, name: str, who: Identity, action: str, body: Any) -> Any:
    """Carry out a confirmed action, as the control API's handler of the same name does."""
    if action == "rollback":
        return rollback_with(service, name, who, body)
    if action == "traffic":
        return traffic_with(service, name, who, body)
    kind = "promote" if action == "promote_full" else action
    return command_with(service, name, who, kind, body)


def _action_fields(request: Request) -> dict[str, str]:
    q = request.query_params
    return {k: q[k] for k in q if k in ("action", "target", "value") or k.startswith("w.")}


async def confirm(request: Request, session: WebSession) -> Response:
    name = check_name(request.path_params["deployment"], "deployment")
    who = session.identity
    _need(who, "operate", name)
    fields = _action_fields(request)
    action = fields.get("action", "")
    body = action_body(action, fields, dry_run=True)
    service = control(request).service
    preview = None
    if isinstance(body, RollbackBody):
        preview = await run_in_threadpool(rollback_with, service, name, who, body)
    status = (await run_in_threadpool(service.status, name))[0]
    return html(
        "confirm.html",
        **base(request, session),
        name=name,
        action=action,
        title=COMMANDS.get(action) or {"rollback": "Roll back", "traffic": "Split traffic"}[action],
        fields=fields,
        body=body,
        preview=preview,
        status=status,
        target=f"{PATH}/d/{name}/act",
    )


async def act(request: Request, session: WebSession, fields: dict[str, str]) -> Response:
    name = check_name(request.path_params["deployment"], "deployment")
    _need(session.identity, "operate", name)
    action = fields.get("action", "")
    body = action_body(action, fields, dry_run=False)
    service = control(request).service
    await run_in_threadpool(perform, service, name, session.identity, action, body)
    return RedirectResponse(f"{PATH}/d/{name}", status_code=303)


def _version_ref(request: Request) -> ComponentRef:
    model = check_name(request.path_params["model"], "model")
    return ComponentRef(model, parse_version(request.path_params["version"]))


async def quarantine_confirm(request: Request, session: WebSession) -> Response:
    ref = _version_ref(request)
    lift = request.query_params.get("lift") == "1"
    _need(session.identity, "admin" if lift else "operate", None if lift else EVERY)
    return html(
        "confirm.html",
        **base(request, session),
        name=None,
        action="lift" if lift else "quarantine",
        title=f"{'Lift the quarantine of' if lift else 'Quarantine'} {ref}",
        fields={"lift": "1" if lift else "0"},
        body=None,
        preview=None,
        status=None,
        target=f"{PATH}/registry/{ref.model}/{ref.version}/act",
    )


async def quarantine_act(request: Request, session: WebSession, fields: dict[str, str]) -> Response:
    ref = _version_ref(request)
    lift = fields.get("lift") == "1"
    _need(session.identity, "admin" if lift else "operate", None if lift else EVERY)
    body = _body(QuarantineBody, {"reason": fields.get("reason") or None, "lift": lift})
    service = control(request).service
    await run_in_threadpool(quarantine_with, service, ref, session.identity, body)
    return RedirectResponse(f"{PATH}/registry/{ref.model}", status_code=303)


# Live updates


FRAGMENTS = {
    "overview": ("overview_live.html", ("deployments", "attention")),
    "deployment": ("deployment_live.html", ("rollout", "actions", "checks", "revisions", "events")),
}


def fragments(template: str, ids: tuple[str, ...], context: dict[str, Any]) -> dict[str, str]:
    """The named macros of a template, drawn with `context`: the parts a page pushes live."""
    module = env.get_template(template).make_module(context)
    return {i: Markup(getattr(module, i)()) for i in ids}


async def live(request: Request) -> Response:
    try:
        session, _ = await current(request, create=False)
        target = request.path_params["target"]
        if target == "overview":
            name = None
        elif target.startswith("d/"):
            name = check_name(target[2:], "deployment")
            _need(session.identity, "read", name)
        else:
            raise InvalidInput("live updates are for the overview or a deployment")
        state = control(request)
        if state.streams >= STREAMS_MAX:
            raise Overloaded(f"{STREAMS_MAX} streams are open on this worker; retry later")
    except MlopsError as exc:
        return error_page(exc)
    return StreamingResponse(
        _frames(request, name),
        media_type="text/event-stream",
        headers={**SECURITY_HEADERS, "x-accel-buffering": "no"},
    )


def _render(
    service: Service, shared: SharedReads, name: str | None, session: WebSession
) -> dict[str, str]:
    who = session.identity
    if name is None:
        return overview_parts(service, shared, who)
    template, ids = FRAGMENTS["deployment"]
    context = deployment_context(service, shared, name, who)
    return fragments(template, ids, {**context, "who": who, "csrf": session.csrf})


async def _frames(request: Request, name: str | None) -> Any:
    """The page's parts whenever they change: the change counter is read every `TICK_S` and
    the parts drawn again when it moved, or every `POLL_S` (measurements and analysis do not
    move the counter); the session is checked each time they are drawn."""
    state, shared = control(request), reads(request)
    sent: dict[str, str] = {}
    loop = asyncio.get_running_loop()
    quiet_since = drawn_at = loop.time() - POLL_S
    seq: int | None = None
    state.streams += 1
    try:
        while not await request.is_disconnected():
            now = loop.time()
            moved = await run_in_threadpool(state.service.change_seq)
            if moved == seq and now - drawn_at < POLL_S:
                await asyncio.sleep(TICK_S)
                continue
            seq, drawn_at = moved, now
            try:
                session, _ = await current(request, create=False)
                found = await run_in_threadpool(_render, state.service, shared, name, session)
            except (Unauthenticated, AccessDenied):
                yield b"event: signed-out\ndata: {}\n\n"
                return
            except MlopsError as exc:
                yield b"event: problem\ndata: " + orjson.dumps({"message": exc.message}) + b"\n\n"
                return
            changed = {k: v for k, v in found.items() if sent.get(k) != v}
            for key, value in changed.items():
                sent[key] = value
                data = orjson.dumps({"id": key, "html": value})
                yield b"event: fragment\ndata: " + data + b"\n\n"
            if changed:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = now
            await asyncio.sleep(TICK_S)
    finally:
        state.streams -= 1


async def root(request: Request) -> Response:
    return RedirectResponse(f"{PATH}/", status_code=308)


def routes() -> list[BaseRoute]:
    V = f"{PATH}/registry/{{model}}/{{version}}"
    return [
        Route(PATH, root, methods=["GET"]),
        Route(f"{PATH}/", page(overview), methods=["GET"]),
        Route(f"{PATH}/login", login_page, methods=["GET"]),
        Route(f"{PATH}/login", login, methods=["POST"]),
        Route(f"{PATH}/logout", change(logout), methods=["POST"]),
        Route(f"{PATH}/registry", page(registry), methods=["GET"]),
        Route(f"{PATH}/registry/{{model}}", page(versions), methods=["GET"]),
        Route(
            f"{PATH}/registry/{{model}}/{{version}}/confirm",
            page(quarantine_confirm),
            methods=["GET"],
        ),
        Route(f"{V}/act", change(quarantine_act), methods=["POST"]),
        Route(f"{PATH}/d/{{deployment}}", page(deployment), methods=["GET"]),
        Route(f"{PATH}/d/{{deployment}}/history", page(history), methods=["GET"]),
        Route(f"{PATH}/d/{{deployment}}/confirm", page(confirm), methods=["GET"]),
        Route(f"{PATH}/d/{{deployment}}/act", change(act), methods=["POST"]),
        Route(f"{PATH}/live/{{target:path}}", live, methods=["GET"]),
        Mount(
            f"{PATH}/static", StaticFiles(packages=[("mlops.dashboard", "static")]), name="static"
        ),
    ]
