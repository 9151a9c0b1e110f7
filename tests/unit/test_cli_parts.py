"""The pieces the commands share: numeric option checks, `-o`, how a failure exits, and the
REVISION=PERCENT parsing of `mlops traffic`."""

from __future__ import annotations

import math

import pytest
import typer

from mlops.cli import options
from mlops.cli.exits import EXIT_BROKEN_PIPE, handled
from mlops.cli.releases import _revision_shares
from mlops.errors import BadReference, NotFound, StoreUnavailable


def test_finite_refuses_nan_and_infinity_and_passes_the_rest() -> None:
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(typer.BadParameter):
            options.finite(bad)
    assert options.finite(2.5) == 2.5
    assert options.finite(3) == 3
    assert options.finite(None) is None


def test_show_prints_json_or_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    class Thing:
        def to_dict(self) -> dict[str, int]:
            return {"a": 1}

    tabled: list[object] = []
    options.show(options.Output.json, Thing(), tabled.append)
    assert capsys.readouterr().out == '{\n  "a": 1\n}\n'
    assert tabled == []
    thing = Thing()
    options.show(options.Output.table, thing, tabled.append)
    assert tabled == [thing]


@pytest.mark.parametrize(
    ("error", "code"),
    [(NotFound("no such deployment"), 3), (BadReference("bad"), 5), (StoreUnavailable("x"), 6)],
)
def test_an_mlops_error_exits_with_its_code(error: Exception, code: int) -> None:
    @handled
    def command() -> None:
        raise error

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == code


def test_an_internal_error_exits_1_and_debug_shows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    @handled
    def command() -> None:
        raise ZeroDivisionError("boom")

    monkeypatch.delenv("MLOPS_DEBUG", raising=False)
    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == 1
    monkeypatch.setenv("MLOPS_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        command()


def test_exit_and_interrupt_pass_through() -> None:
    @handled
    def command() -> None:
        raise typer.Exit(10)

    with pytest.raises(typer.Exit) as exited:
        command()
    assert exited.value.exit_code == 10
    assert EXIT_BROKEN_PIPE == 141


def test_revision_shares_parse_and_refuse() -> None:
    assert _revision_shares(["7=10", " 8 = 90% "], "weight") == {7: 10.0, 8: 90.0}
    assert _revision_shares(None, "weight") == {}
    for bad in ("7", "0=10", "7=101", "7=-1", "x=10", "7=nan", "7=" + "1" * 70):
        with pytest.raises(BadReference, match="expected REVISION=PERCENT"):
            _revision_shares([bad], "shadow")
