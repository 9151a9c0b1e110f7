"""Delayed labels (`POST /v1/feedback/{deployment}`): taken only from a token with the
`feedback` scope for that deployment (labels decide rollbacks), kept only for requests the
deployment answered, once each, at a bounded rate per deployment."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from mlops.errors import BodyTooLarge
from mlops.gateway.access import refused
from mlops.gateway.http import CLOSES, REQUEST_ID_MAX, error, json_response
from mlops.gateway.state import Gateway
from mlops.web.body import drained, read_body

LABEL_BODY_MAX = 4096
LABEL_TEXT_MAX = 256
LABEL_NUMBER_MAX = 2**53
LABEL_POLL_S = 0.2
EXPECTED = 'body: expected {"request_id": "...", "label": ...}'


async def feedback(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    name = request.path_params["name"]
    denied = await refused(request, gateway, "feedback", name)
    if denied is not None:
        return denied
    route = gateway.table.deployments.get(name)
    if route is None:
        await drained(request, LABEL_BODY_MAX)
        return error(f"deployment {name!r} not found", 404)
    if not gateway.may_label(route.id):
        await drained(request, LABEL_BODY_MAX)
        return error(f"too many labels for {name!r}; retry later", 429, {"retry-after": "1"})
    try:
        data = orjson.loads(await read_body(request, LABEL_BODY_MAX))
    except BodyTooLarge:
        return error(f"a label's body is at most {LABEL_BODY_MAX} bytes", 413, CLOSES)
    except orjson.JSONDecodeError:
        return error(EXPECTED, 400)
    if not isinstance(data, dict) or "label" not in data:
        return error(EXPECTED, 400)
    request_id = data.get("request_id")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= REQUEST_ID_MAX:
        return error("request_id: expected the X-Request-Id of a served request", 400)
    problem = label_problem(data["label"])
    if problem is not None:
        return error(f"label: {problem}", 400)
    outcome = await _add_label(gateway, route.id, request_id, data["label"])
    if outcome == "duplicate":
        return error(f"request {request_id!r} is labelled already; a label is kept", 409)
    if outcome == "unserved":
        return error(f"{name!r} logged no answer to request {request_id!r}", 404)
    gateway.recorder.labelled(name)
    return json_response({"accepted": True, "request_id": request_id}, 202)


def label_problem(label: Any) -> str | None:
    """Why a delayed label cannot be kept, or None: a label is a class or a finite number."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int | float):
        if not math.isfinite(label) or abs(label) > LABEL_NUMBER_MAX:
            return f"a number within ±{LABEL_NUMBER_MAX:.0f} (2**53)"
        return None
    if isinstance(label, str):
        return None if 0 < len(label) <= LABEL_TEXT_MAX else f"1 to {LABEL_TEXT_MAX} characters"
    return "expected a class (text, a number or true/false)"


async def _add_label(gateway: Gateway, deployment_id: int, request_id: str, label: Any) -> str:
    """Keep the label if the deployment answered the request. Answers reach the store about
    once a flush interval; a label that comes sooner waits for them, a bounded while."""
    loop = asyncio.get_running_loop()
    if gateway.recorder.pending(deployment_id, request_id):
        await loop.run_in_executor(None, gateway.recorder.flush)
    deadline = time.monotonic() + 2 * gateway.config.flush_interval_s
    while True:
        outcome: str = await loop.run_in_executor(
            None, gateway.service.add_label, deployment_id, request_id, label
        )
        if outcome != "unserved" or time.monotonic() >= deadline:
            return outcome
        await asyncio.sleep(LABEL_POLL_S)
