"""What `mlops serve` runs in each worker: the gateway (the data plane) and the control API
(mounted at `/api`), each with its own middleware and errors, and the rollout controller
beside them when the config asks for it. The one place that wires them together; none
imports another."""

from __future__ import annotations

from contextlib import AsyncExitStack

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from mlops.api.app import create_api
from mlops.api.operations import MOUNT
from mlops.controller.judge import analysis_judge
from mlops.controller.leader import LeaderLoop
from mlops.controller.loop import Controller
from mlops.dashboard.session import PATH as UI
from mlops.gateway.app import create_app as gateway_app
from mlops.gateway.config import CONFIG_ENV, GatewayConfig
from mlops.service import Service

__all__ = ["CONFIG_ENV", "GatewayConfig", "create_app", "leader"]


def leader(service: Service) -> LeaderLoop:
    """The rollout controller of a gateway worker: it acts only while it holds the lease."""
    controller = Controller(service, analysis_judge, restores_in_child=True)
    return LeaderLoop(controller, after_tick=controller.deliver)


class Worker:
    """The ASGI app of a worker: a request under `/api/` goes to the control API, one under
    `/ui` to the dashboard (on the control API's app and state), any other to the gateway (two
    prefix tests, no router in front of the prediction path); the lifespan starts both and
    stops them in reverse order."""

    def __init__(self, api: Starlette | None, gateway: Starlette | None) -> None:
        self.api, self.gateway = api, gateway
        self.parts = [part for part in (api, gateway) if part is not None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.api is not None and scope["path"].startswith(UI):
            await self.api(scope, receive, send)
        elif self.api is not None and (
            self.gateway is None or scope["path"].startswith(f"{MOUNT}/")
        ):
            await self.api(
                {**scope, "root_path": scope.get("root_path", "") + MOUNT}, receive, send
            )
        else:
            assert self.gateway is not None
            await self.gateway(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            try:
                for part in self.parts:
                    await stack.enter_async_context(part.router.lifespan_context(part))
            except BaseException as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                raise
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})


def create_app(config: GatewayConfig | None = None) -> Worker:
    """The app of one `mlops serve` worker. Without a config it reads `MLOPS_GATEWAY_CONFIG`."""
    cfg = config or GatewayConfig.from_env()
    if not (cfg.api or cfg.gateway):
        raise ValueError("serve the gateway, the control API, or both")
    return Worker(
        create_api(cfg) if cfg.api else None,
        gateway_app(cfg, leader if cfg.controller else None) if cfg.gateway else None,
    )
