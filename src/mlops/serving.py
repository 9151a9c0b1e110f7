"""What `mlops serve` runs in each worker: the gateway, with the rollout controller beside it
when the config asks for it. The one place that wires the two together; neither imports the
other."""

from __future__ import annotations

from starlette.applications import Starlette

from mlops.controller.judge import analysis_judge
from mlops.controller.leader import LeaderLoop
from mlops.controller.loop import Controller
from mlops.gateway.app import create_app as gateway_app
from mlops.gateway.config import CONFIG_ENV, GatewayConfig
from mlops.service import Service

__all__ = ["CONFIG_ENV", "GatewayConfig", "create_app", "leader"]


def leader(service: Service) -> LeaderLoop:
    """The rollout controller of a gateway worker: it acts only while it holds the lease."""
    controller = Controller(service, analysis_judge, restores_in_child=True)
    return LeaderLoop(controller, after_tick=controller.deliver)


def create_app(config: GatewayConfig | None = None) -> Starlette:
    """The app of one `mlops serve` worker. Without a config it reads `MLOPS_GATEWAY_CONFIG`."""
    cfg = config or GatewayConfig.from_env()
    return gateway_app(cfg, leader if cfg.controller else None)
