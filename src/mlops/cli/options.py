"""The options and arguments several commands share, and the checks on numeric options."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar

import typer

from mlops.cli.lazy import lazy_module

if TYPE_CHECKING:
    from mlops.cli import render as render
else:  # the one lazy handle on the renderer: commands import `render` from here
    render = lazy_module("mlops.cli.render")

HOUR_S = 3600.0
DAY_S = 86400.0


class HasDict(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


N = TypeVar("N", int, float, None)
J = TypeVar("J", bound=HasDict | Sequence[HasDict] | Sequence[dict[str, Any]])


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOpt = Annotated[
    Output, typer.Option("--output", "-o", help="table for people, json for scripts")
]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why: recorded in the event")]
DeploymentArg = Annotated[str | None, typer.Argument(help="may be left out when there is only one")]


def finite(value: N) -> N:
    """Typer's ranges let NaN through (every comparison with it is false): refuse it here."""
    if isinstance(value, float) and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def bounded(lo: float, hi: float, **option: Any) -> Any:
    """An option whose number must lie in [lo, hi] and be finite (exit 2 otherwise)."""
    return typer.Option(min=lo, max=hi, callback=finite, **option)


def show(output: Output, value: J, table: Callable[[J], None]) -> None:
    """Print `value` as JSON with `-o json`, else as `table` prints it for people."""
    if output == Output.json:
        render.emit_json(value)
    else:
        table(value)
