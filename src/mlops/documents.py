"""The one loader for the YAML and JSON documents users hand to mlops: rollout specs, params and
lookup files, sample rows, an MLflow folder's `MLmodel`.

What it refuses, each as InvalidInput (exit 5) naming the document and where in it:

- more than `Limits.max_bytes` bytes (read no further than that), or text that is not UTF-8;
- YAML anchors and aliases (`&a`, `*a`): a "billion laughs" is refused while it is parsed,
  before any of it is built, and explicit tags outside YAML's core schema (`!!python/...`);
- nesting deeper than `Limits.max_depth`, more than `Limits.max_nodes` values;
- integers outside 64 bits (and those past Python's digit limit).

A YAML document is first read as a stream of parser events (libyaml when present), where these
checks cost nothing, and only then built with the safe constructor. A JSON document is parsed by
the standard library and then walked, without recursion. Messages are bounded: values are shown
clipped (`shown`), never whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops.core.limits import SPEC_MAX_BYTES
from mlops.errors import DocumentRefused, NotADocument, UnreadableFile

__all__ = [
    "DEFAULT_LIMITS",
    "SPEC_LIMITS",
    "DocumentRefused",
    "Limits",
    "NotADocument",
    "clip",
    "load_json",
    "load_json_or_yaml",
    "load_yaml",
    "read_bytes",
    "shown",
]

INT_BOUND = 1 << 63
"""Integers must lie in [-2**63, 2**63): what the store and numpy's int64 hold."""

_CORE_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map")
)
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1 << 20
    """1 MiB."""
    max_depth: int = 32
    """Mappings and lists inside each other."""
    max_nodes: int = 100_000
    """Scalars, mappings and lists in all."""


DEFAULT_LIMITS = Limits()
SPEC_LIMITS = Limits(max_bytes=SPEC_MAX_BYTES, max_nodes=10_000)
"""A rollout spec: 64 KiB, 10,000 values."""


def clip(text: str, limit: int = 160) -> str:
    """`text` cut to `limit` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def shown(value: Any, limit: int = 80) -> str:
    """A short repr of a value from a document, whatever its size (no whole-structure repr)."""
    if isinstance(value, str | bytes):
        return clip(repr(value[: limit + 1]), limit)
    if isinstance(value, bool | float | type(None)):
        return repr(value)
    if isinstance(value, int):
        digits = value.bit_length() * 0.302
        return repr(value) if digits < limit else f"an integer of about {digits:.0f} digits"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def read_bytes(path: Path, what: str, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The bytes of the file at `path`, reading at most `limits.max_bytes` + 1 of them."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise UnreadableFile(f"cannot read {what}: {exc.strerror or exc}") from None
    _check_size(data, what, limits)
    return data


def load_yaml(data: bytes | str, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The value of one YAML document (None when empty), or InvalidInput saying what is wrong."""
    text = _text(data, what, limits)
    try:
        _check_events(yaml.parse(text, Loader=_SafeLoader), what, limits)
        value = yaml.load(text, Loader=_SafeLoader)
    except yaml.YAMLError as exc:
        raise NotADocument(f"{what} is not valid YAML: {_yaml_problem(exc)}") from None
    except ValueError:
        raise DocumentRefused(f"{what}: {_DIGITS}") from None
    _check_value(value, what, limits)
    return value


def load_json(data: bytes | str, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """The value of a JSON document, or InvalidInput saying what is wrong."""
    text = _text(data, what, limits)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotADocument(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:
        raise DocumentRefused(f"{what}: {_DIGITS}") from None
    except RecursionError:
        raise DocumentRefused(
            f"{what}: nested deeper than {limits.max_depth} levels (the limit)"
        ) from None
    _check_value(value, what, limits)
    return value


def load_json_or_yaml(data: bytes | str, what: str, limits: Limits = DEFAULT_LIMITS) -> Any:
    """JSON when the text is JSON, else YAML."""
    text = _text(data, what, limits)
    try:
        return load_json(text, what, limits)
    except NotADocument:
        return load_yaml(text, what, limits)


_DIGITS = "a number has too many digits"


def _check_size(data: bytes | str, what: str, limits: Limits) -> None:
    if len(data) > limits.max_bytes:
        raise DocumentRefused(
            f"{what} is larger than {limits.max_bytes:,} bytes (the limit for this document)"
        )


def _text(data: bytes | str, what: str, limits: Limits) -> str:
    _check_size(data, what, limits)
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise NotADocument(f"{what} is not UTF-8 text (byte {exc.start})") from None


def _where(event: yaml.Event) -> str:
    mark = event.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"


def _check_events(events: Iterator[yaml.Event], what: str, limits: Limits) -> None:
    """Count values and depth as the document would be once its aliases are expanded, while
    it is parsed: an alias costs the size of what its anchor names, so a "billion laughs" is
    refused after a few dozen events, before anything is built."""
    nodes = 0
    anchors: dict[str, tuple[int, int]] = {}
    """anchor -> (values, depth) of the node it names."""
    # Open collections: (anchor, values counted before it, its depth, deepest depth below it).
    open_: list[tuple[str | None, int, int, int]] = []

    def grow(count: int, deepest: int, event: yaml.Event) -> None:
        nonlocal nodes
        nodes += count
        if nodes > limits.max_nodes:
            raise DocumentRefused(
                f"{what}: more than {limits.max_nodes:,} values, aliases expanded (the limit)"
            )
        if deepest > limits.max_depth:
            raise DocumentRefused(
                f"{what}: nested deeper than {limits.max_depth} levels ({_where(event)})"
            )
        if open_:
            anchor, before, depth, below = open_[-1]
            open_[-1] = (anchor, before, depth, max(below, deepest))

    for event in events:
        depth = len(open_)
        if isinstance(event, yaml.AliasEvent):
            size, deep = anchors.get(event.anchor or "", (1, 0))
            grow(size, depth + deep, event)
            continue
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, before, start, below = open_.pop()
            if anchor is not None:
                anchors[anchor] = (nodes - before, below - start)
            if open_:
                grow(0, below, event)
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        tag = getattr(event, "tag", None)
        if tag is not None and tag != "!" and tag not in _CORE_TAGS:
            raise DocumentRefused(f"{what}: the YAML tag {clip(tag, 60)} is not accepted")
        if isinstance(event, yaml.CollectionStartEvent):
            grow(1, depth + 1, event)
            open_.append((event.anchor, nodes - 1, depth, depth + 1))
        else:
            grow(1, depth, event)
            if event.anchor is not None:
                anchors[event.anchor] = (1, 0)


def _check_value(value: Any, what: str, limits: Limits) -> None:
    """Walk the built value without recursion: depth, count, and integers in 64 bits."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    nodes = 0
    while stack:
        item, path, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise DocumentRefused(f"{what}: more than {limits.max_nodes:,} values (the limit)")
        if isinstance(item, int) and not isinstance(item, bool):
            if not -INT_BOUND <= item < INT_BOUND:
                raise DocumentRefused(
                    f"{what}: {path or 'the document'}: {shown(item)} is outside 64 bits"
                )
        elif isinstance(item, dict | list):
            if depth >= limits.max_depth:
                raise DocumentRefused(
                    f"{what}: {path or 'the document'}: nested deeper than "
                    f"{limits.max_depth} levels (the limit)"
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    inner = f"{path}{'.' if path else ''}{clip(str(key), 40)}"
                    stack += [(key, inner, depth), (child, inner, depth + 1)]
            else:
                stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return clip(f"{exc.problem or exc.context or 'syntax error'}{where}")
    return clip(str(exc))
