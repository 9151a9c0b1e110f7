"""Who a control request comes from, and whether they may (`authorize`), and the actor its
events record: the authenticated token, never a name the client gives."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from mlops.api.bodies import BODY_MAX
from mlops.core.access import Identity, IPNetwork, Need
from mlops.service import Service
from mlops.service.authn import Authenticator
from mlops.web.access import check


@dataclass
class Control:
    """The control API's per-process state: the service, and who has been checked lately."""

    service: Service
    authenticator: Authenticator
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_upload_bytes: int = 1024 * 1024 * 1024
    streams: int = 0
    """Event streams open on this worker."""


def control(request: Request) -> Control:
    found: Control = request.app.state.control
    return found


async def authorize(request: Request, need: Need, deployment: str | None = None) -> Identity:
    state = control(request)
    return await check(
        request, state.authenticator, state.trusted_proxies, need, deployment, body_limit=BODY_MAX
    )
