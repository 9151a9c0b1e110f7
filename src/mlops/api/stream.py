"""A live stream of what happens (`GET /api/v1/stream`, server-sent events): each new event
(`event: event`, resumable with `Last-Event-ID`) and each change of a rollout in progress
(`event: rollout`), for the deployments the caller's token covers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mlops.api.auth import Control, authorize, control
from mlops.core.access import Identity, refusal
from mlops.core.refs import MAX_INT, check_name
from mlops.errors import AccessDenied, InvalidInput, Overloaded
from mlops.records import Event
from mlops.service import Service

STREAMS_MAX = 64
"""Open streams per worker; more get 503."""
POLL_S = 0.5
KEEPALIVE_S = 15.0


def shown_to(who: Identity, event: Event, deployment: str | None = None) -> bool:
    """Whether a caller sees an event: its deployment's, if the token covers it; events about
    no deployment (registry, tokens, refusals) only to admins."""
    if deployment is not None and event.deployment != deployment:
        return False
    if event.deployment is None:
        return refusal(who, "admin") is None
    return who.covers(event.deployment)


def _resume_from(request: Request) -> int | None:
    raw = request.headers.get("last-event-id")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or int(raw) > MAX_INT:
        raise InvalidInput("Last-Event-ID must be the id of an event")
    return int(raw)


def _frame(kind: str, data: object, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


async def stream(request: Request) -> Response:
    deployment = request.query_params.get("deployment")
    if deployment is not None:
        check_name(deployment, "deployment")
    who = await authorize(request, "read", deployment)
    after = _resume_from(request)
    state = control(request)
    if state.streams >= STREAMS_MAX:
        raise Overloaded(f"{STREAMS_MAX} event streams are open on this worker; retry later")
    return StreamingResponse(
        _frames(request, state, who, deployment, after),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


async def _frames(
    request: Request, state: Control, who: Identity, deployment: str | None, after: int | None
) -> AsyncIterator[bytes]:
    service = state.service
    seen: dict[str, bytes] = {}
    quiet_since = asyncio.get_running_loop().time()
    state.streams += 1  # counted while the body is sent: a stream never started never counts
    try:
        _, start = await asyncio.to_thread(service.events_after, None)
        after = start if after is None else after
        while not await request.is_disconnected():
            try:
                await authorize(request, "read", deployment)  # a revoked token's stream ends
            except AccessDenied:
                return
            frames = await asyncio.to_thread(_next_frames, service, who, deployment, after, seen)
            after = frames.after
            for frame in frames.out:
                yield frame
            now = asyncio.get_running_loop().time()
            if frames.out:
                quiet_since = now
            elif now - quiet_since >= KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet_since = now
            await asyncio.sleep(POLL_S)
    finally:
        state.streams -= 1


class _Frames:
    def __init__(self, out: list[bytes], after: int) -> None:
        self.out, self.after = out, after


def _next_frames(
    service: Service, who: Identity, deployment: str | None, after: int, seen: dict[str, bytes]
) -> _Frames:
    """The frames since the last poll: new events, and rollouts whose view changed."""
    found, after = service.events_after(after, limit=100)
    out = [_frame("event", e.to_dict(), e.id) for e in found if shown_to(who, e, deployment)]
    names = [deployment] if deployment else service.rollouts_in_progress()
    for name in names:
        if not who.covers(name):
            continue
        statuses = service.status(name)
        view = statuses[0].rollout if statuses else None
        body = orjson.dumps({"deployment": name, "rollout": view})
        if seen.get(name) != body:
            seen[name] = body
            out.append(_frame("rollout", {"deployment": name, "rollout": view}))
    return _Frames(out, after)
