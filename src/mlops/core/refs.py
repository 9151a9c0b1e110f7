"""Names and references: `MODEL:VERSION`, `NAME=MODEL:VERSION`, deployment and component names."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from mlops.errors import BadReference, InvalidInput, NotFound

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
"""Matched whole (`fullmatch`): a trailing newline is not part of a name."""
NAME_RULE = "1-63 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
TAG_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,62}")
TAG_VALUE_MAX = 256
MAX_INT = 2**31 - 1
"""The largest version, revision or count the store holds (a PostgreSQL `integer`)."""

_UNSAFE_FORMATS = frozenset("\u2028\u2029")
"""Line and paragraph separators: they break a terminal line like a newline."""


def is_printable(text: str) -> bool:
    """Whether `text` has no control characters (C0, DEL, C1) and no invisible format characters
    (bidirectional overrides, zero-width marks) that could change how a terminal shows it."""
    return not any(
        unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") or c in _UNSAFE_FORMATS
        for c in text
    )


@dataclass(frozen=True, order=True)
class ComponentRef:
    """One registered version of one model, as a release pins it."""

    model: str
    version: int

    def __str__(self) -> str:
        return f"{self.model}:{self.version}"


def check_name(value: str, what: str) -> str:
    if not NAME_PATTERN.fullmatch(value):
        raise BadReference(f"invalid {what} name {value!r}: {NAME_RULE}")
    return value


def parse_version(text: str, what: str = "version") -> int:
    stripped = text.strip(" ")
    if stripped.lower().startswith("v"):
        stripped = stripped[1:]
    if not re.fullmatch(r"[0-9]{1,10}", stripped) or not 1 <= int(stripped) <= MAX_INT:
        raise BadReference(
            f"invalid {what} {text[:40]!r}: expected a positive integer up to {MAX_INT}"
        )
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
    return check_name(name.strip(" "), "component"), parse_ref(ref.strip(" "))


def parse_tag(text: str) -> tuple[str, str]:
    """`team=risk` -> ("team", "risk"); the key is a name (letters, digits, '.', '_', '-',
    '/'), the value up to TAG_VALUE_MAX printable characters."""
    key, sep, value = text.partition("=")
    key, value = key.strip(" "), value.strip(" ")
    if not sep or not key:
        raise BadReference(f"invalid tag {text[:80]!r}: expected KEY=VALUE")
    if not TAG_KEY_PATTERN.fullmatch(key):
        raise BadReference(
            f"invalid tag key {key[:80]!r}: 1-63 characters: letters, digits, '.', '_', '-' "
            "or '/', starting with a letter or digit"
        )
    if len(value) > TAG_VALUE_MAX or not is_printable(value):
        raise BadReference(
            f"invalid tag value for {key!r}: up to {TAG_VALUE_MAX} printable characters, "
            "no control characters"
        )
    return key, value


def only_deployment(names: list[str]) -> str:
    """The deployment meant when none is named: the only one there is."""
    if not names:
        raise NotFound("the store holds no deployment yet: create one with `mlops deploy`")
    if len(names) > 1:
        raise InvalidInput("the store holds several deployments: name the one you mean")
    return names[0]
