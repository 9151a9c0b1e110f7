"""Where a declared data resource lives: exactly one of an SQLite file, a PostgreSQL URL or a
folder, given as the options of the same names."""

from __future__ import annotations

from pathlib import Path

from mlops.errors import InvalidInput


def one_location(
    *,
    sqlite: str | Path | None,
    postgresql: str | None,
    directory: str | Path | None,
    spelled: str = "",
) -> tuple[str, str]:
    """(driver, location) of the one given; `spelled` prefixes each name in the error (`--`)."""
    given = [
        (driver, str(value))
        for driver, value in (
            ("sqlite", sqlite),
            ("postgresql", postgresql),
            ("directory", directory),
        )
        if value is not None
    ]
    if len(given) != 1:
        raise InvalidInput(
            f"give exactly one of {spelled}sqlite, {spelled}postgresql or {spelled}directory"
        )
    return given[0]
