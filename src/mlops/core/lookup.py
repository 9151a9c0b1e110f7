"""A lookup: the first stage of a pipeline, which joins feature values read from one of the
deployment's data resources to each request by a key the request carries.

    lookup:
      resource: features        # the deployment's data resource (`mlops data add`)
      table: customer_features
      key: customer_id          # the request's field, and the table's key column
      columns: [income, tenure]
      inputs: [customer_id, amount]   # the request's fields; default [key]
      missing: error            # or nan: a key the table lacks gives NaN features

The stage answers the request's fields other than the key, then the columns read; when the
next stage names its features, it answers exactly those, in the next stage's order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.core.signature import Signature, TensorSpec
from mlops.errors import FeaturesMissing as FeaturesMissing
from mlops.errors import InvalidKey as InvalidKey

if TYPE_CHECKING:
    import numpy as np

LOOKUP_SOURCE = "lookup"
"""`Signature.source` of a lookup version."""
MISSING = ("error", "nan")
MAX_KEY_CHARS = 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class LookupSpec:
    resource: str
    table: str
    key: str
    columns: tuple[str, ...]
    inputs: tuple[str, ...]
    missing: str = "error"

    @property
    def outputs(self) -> tuple[str, ...]:
        """The stage's columns, when the next stage does not name its own."""
        return tuple(name for name in self.inputs if name != self.key) + self.columns

    def signature(self) -> Signature:
        specs = tuple(TensorSpec(name, "object") for name in self.inputs)
        return Signature(
            inputs=specs,
            outputs=tuple(TensorSpec(name, "object") for name in self.outputs),
            features=specs,
            output_kind="transform",
            source=LOOKUP_SOURCE,
            allows_missing=True,
            reads=self.resource,
        )

    def arrange(
        self,
        rows: np.ndarray,
        found: Mapping[Any, Sequence[Any]],
        outputs: Sequence[str],
        where: str,
    ) -> np.ndarray:
        """The stage's output for `rows` (the request's fields in `inputs` order), given the
        columns read for each key; numeric when every value is a number."""
        at_input = {name: i for i, name in enumerate(self.inputs)}
        at_column = {name: i for i, name in enumerate(self.columns)}
        key_at = at_input[self.key]
        nothing = (math.nan,) * len(self.columns)
        out: list[list[Any]] = []
        for row in rows:
            key = normal_key(row[key_at])
            values = found.get(key)
            if values is None:
                if self.missing == "error":
                    raise FeaturesMissing(f"{where} has no row with {self.key} = {shown(key)}")
                values = nothing
            out.append(
                [
                    values[at_column[name]] if name in at_column else row[at_input[name]]
                    for name in outputs
                ]
            )
        import numpy as np  # loaded with the first lookup, not with the core

        array = np.asarray(out, dtype=object).reshape(len(out), len(outputs))
        if all(_is_number(v) for v in array.flat):
            return array.astype(np.float64)
        return array

    def keys(self, rows: np.ndarray) -> list[Any]:
        """The distinct keys of `rows` that the table is asked for: text and 64-bit whole
        numbers. Other numbers and nulls cannot be in the table (they are missing); values of
        any other kind raise InvalidKey."""
        at = self.inputs.index(self.key)
        found: dict[Any, None] = {}
        for row in rows:
            key = normal_key(row[at])
            if key is None or isinstance(key, float):
                continue
            problem = key_problem(key)
            if problem is not None:
                raise InvalidKey(f"{self.key}: {problem}")
            found[key] = None
        return list(found)


def normal_key(value: Any) -> Any:
    """A key as the table holds it: 42.0 (a JSON number sent as float) is the key 42."""
    if not isinstance(value, int | float | str):  # plain keys skip the import on the hot path
        import numpy as np

        if isinstance(value, np.generic):
            value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # past int64 it is refused by key_problem
    return value


def key_problem(key: Any) -> str | None:
    """Why `key` (as `normal_key` gives it) cannot be a table's key, or None."""
    if isinstance(key, bool) or not isinstance(key, int | str):
        return f"expected text or a whole number, got {type(key).__name__}"
    if isinstance(key, int) and not INT64_MIN <= key <= INT64_MAX:
        return "a whole number outside the 64-bit range"
    if isinstance(key, str) and len(key) > MAX_KEY_CHARS:
        return f"longer than {MAX_KEY_CHARS} characters"
    return None


def shown(value: Any, limit: int = 64) -> str:
    """`value` as an error message shows it: its repr, cut at `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_number(value: Any) -> bool:
    if value is None or isinstance(value, bool):
        return value is None
    if isinstance(value, int | float):
        return True
    import numpy as np

    return isinstance(value, np.number)


def lookup_problem(spec_outputs: Sequence[str], wanted: Sequence[str]) -> str | None:
    """Why a lookup cannot feed a stage that names the features `wanted`, or None."""
    missing = [name for name in wanted if name not in spec_outputs]
    if missing:
        return (
            f"it gives no column {missing[0]!r}, which the next stage takes "
            f"(it gives {', '.join(spec_outputs)})"
        )
    return None
