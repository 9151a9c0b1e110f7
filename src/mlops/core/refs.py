"""Names and references: `MODEL:VERSION`, `NAME=MODEL:VERSION`, deployment and component names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mlops.errors import BadReference

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
NAME_RULE = "1-63 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"


@dataclass(frozen=True, order=True)
class ComponentRef:
    """One registered version of one model, as a release pins it."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


def check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.match(value):
        raise BadReference(f"invalid {what} name {value!r}: {NAME_RULE}")
    return value


def parse_version(text: str, what: str = "version") -> int:
    stripped = text.strip()
    if stripped.lower().startswith("v"):
        stripped = stripped[1:]
    if not stripped.isdigit() or int(stripped) < 1:
        raise BadReference(f"invalid {what} {text!r}: expected a positive integer")
    return int(stripped)


def parse_ref(text: str) -> ComponentRef:
    """`fraud:3` -> ComponentRef("fraud", 3)."""
    model, sep, version = text.rpartition(":")
    if not sep or not model:
        raise BadReference(f"invalid reference {text!r}: expected MODEL:VERSION, e.g. fraud:3")
    return ComponentRef(check_name(model, "model"), parse_version(version))


def parse_component(text: str) -> tuple[str, ComponentRef]:
    """`preprocessor=scaler:2` -> ("preprocessor", ComponentRef("scaler", 2))."""
    name, sep, ref = text.partition("=")
    if not sep:
        raise BadReference(
            f"invalid component {text!r}: expected NAME=MODEL:VERSION, e.g. preprocessor=scaler:2"
        )
    return check_name(name.strip(), "component"), parse_ref(ref.strip())


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise BadReference(f"invalid tag {text!r}: expected KEY=VALUE")
    return key.strip(), value.strip()
