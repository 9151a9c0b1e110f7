"""Commands that run until stopped or done: the controller alone, and the demo."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from mlops.cli.exits import handled
from mlops.cli.options import HOUR_S, bounded, render
from mlops.cli.state import local_settings


@handled
def controller(
    ctx: typer.Context,
    tick: Annotated[float, bounded(0.05, HOUR_S, help="seconds between ticks")] = 1.0,
    active_tick: Annotated[
        float, bounded(0.05, HOUR_S, help="seconds between ticks while a rollout is active")
    ] = 0.25,
    lease: Annotated[float, bounded(0.5, HOUR_S, help="seconds a leader's lease lasts")] = 5.0,
) -> None:
    """Run the rollout controller alone (it also runs inside `mlops serve`); one leads."""
    from mlops.controller.judge import analysis_judge
    from mlops.controller.leader import LeaderLoop, controller_service
    from mlops.controller.loop import Controller

    render.log_safely()
    service = controller_service(local_settings(ctx, "controller"), lease)
    ctl = Controller(service, analysis_judge)
    loop = LeaderLoop(
        ctl, tick_s=tick, active_tick_s=active_tick, lease_s=lease, after_tick=ctl.deliver
    )
    render.err.print(f"mlops controller {loop.holder}: ticking every {tick:g} s")
    signal.signal(signal.SIGTERM, lambda *_: loop.request_stop())
    try:
        loop.run()
    except KeyboardInterrupt:
        pass
    finally:
        loop.stop()  # gives the lease up: another controller leads at once


@handled
def demo(
    home: Annotated[
        Path | None,
        typer.Option(help="keep the demo's store here (default: a new temporary folder)"),
    ] = None,
) -> None:
    """Train two small models, register, deploy and roll back, and print the timeline."""
    from mlops.demo import run_demo

    run_demo(home)
