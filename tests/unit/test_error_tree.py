"""Every exception class mlops defines is in the error tree of `mlops.errors`, and the modules
that raise one still offer it under its old name, as the same class."""

from __future__ import annotations

import ast
from pathlib import Path

import mlops
from mlops import errors
from mlops.core import lookup, payload
from mlops.notify import notifier
from mlops.runtime import batching
from mlops.runtime import lookup as gateway_lookup

SRC = Path(mlops.__file__).parent


def _exception_classes() -> dict[str, str]:
    """Public classes in src/ whose bases name an exception: name -> file."""
    found: dict[str, str] = {}
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
            if any(b.endswith(("Error", "Exception")) or b in errors.__all__ for b in bases):
                found[node.name] = str(path.relative_to(SRC))
    return found


def test_every_exception_class_is_defined_in_the_error_tree() -> None:
    outside = {name: where for name, where in _exception_classes().items() if where != "errors.py"}
    assert outside == {}


def test_every_error_derives_from_mlops_error() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.MlopsError), name


def test_old_names_are_the_same_classes() -> None:
    assert payload.PayloadError is errors.PayloadError
    assert lookup.FeaturesMissing is errors.FeaturesMissing
    assert lookup.InvalidKey is errors.InvalidKey
    assert gateway_lookup.UnknownKey is errors.UnknownKey
    assert batching.Overloaded is errors.Overloaded
    assert notifier.DeliveryFailed is errors.DeliveryFailed


def test_errors_that_were_builtin_kinds_still_are() -> None:
    assert issubclass(errors.FeaturesMissing, LookupError)
    assert issubclass(errors.InvalidKey, LookupError)
    assert issubclass(errors.NotPlainFolder, ValueError)
    assert issubclass(errors.InvalidKey, errors.BadKey)
    assert issubclass(errors.FeaturesMissing, errors.UnknownKey)


def test_delivery_failed_keeps_the_receivers_wait() -> None:
    failed = errors.DeliveryFailed("503 from the receiver", retry_after=30.0)
    assert failed.message == failed.reason == "503 from the receiver"
    assert failed.retry_after == 30.0
    assert (failed.exit_code, failed.http_status) == (6, 503)
