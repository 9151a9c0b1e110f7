"""A version's signature from a sample file (--sample), and merged with the one its model declares
(each flavor reads its own: mlops.flavors)."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from mlops.core.signature import Signature, TensorSpec
from mlops.documents import DEFAULT_LIMITS, NotADocument, clip, load_json, read_bytes
from mlops.errors import InvalidInput, UnreadableFile

EXAMPLE_ROWS = 5


def common_dtype(specs: tuple[TensorSpec, ...]) -> str:
    dtypes = {spec.dtype for spec in specs}
    return dtypes.pop() if len(dtypes) == 1 else "object"


def read_sample(path: Path) -> tuple[list[str] | None, list[list[Any]]]:
    """Column names (if the file has them) and rows, from a JSON or CSV sample file."""
    what = f"the sample {path}"
    raw = read_bytes(path, what)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(f"{what} is not UTF-8 text (byte {exc.start})") from None
    try:
        data: Any = load_json(text, what)
    except NotADocument:
        return _read_csv(text, path)
    if isinstance(data, dict):
        if "dataframe_split" in data:
            split = data["dataframe_split"]
            columns = split.get("columns") if isinstance(split, dict) else None
            rows = split.get("data") if isinstance(split, dict) else None
            if not isinstance(columns, list | None) or not isinstance(rows, list | None):
                raise InvalidInput(
                    f"sample {path}: dataframe_split must hold a list of columns and a list of "
                    "rows (data)"
                )
            return list(columns or []) or None, list(rows or [])
        data = data.get("instances", data.get("inputs"))
    if not isinstance(data, list) or not data:
        raise InvalidInput(
            f'sample {path}: expected a non-empty list of rows, or {{"instances": [...]}}'
        )
    if all(isinstance(row, dict) for row in data):
        names = list(data[0])
        return names, [[row.get(name) for name in names] for row in data]
    if all(isinstance(row, list) for row in data):
        return None, data
    return None, [[value] for value in data]


def _read_csv(text: str, path: Path) -> tuple[list[str] | None, list[list[Any]]]:
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise InvalidInput(f"sample {path} is neither JSON nor CSV: {clip(str(exc))}") from None
    if sum(len(row) for row in rows) > DEFAULT_LIMITS.max_nodes:
        raise InvalidInput(
            f"sample {path}: more than {DEFAULT_LIMITS.max_nodes:,} values (the limit); a few "
            "rows are enough"
        )
    if not rows:
        raise InvalidInput(f"sample {path} is neither JSON nor CSV with rows")
    header = None
    if any(not _is_number(cell) for cell in rows[0]):
        header, rows = rows[0], rows[1:]
    return header, [[_parse_cell(cell) for cell in row] for row in rows]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _parse_cell(cell: str) -> Any:
    try:
        return int(cell)
    except ValueError:
        try:
            return float(cell)
        except ValueError:
            return cell


def from_sample(path: Path) -> Signature:
    names, rows = read_sample(path)
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise InvalidInput(f"sample {path}: rows have different lengths {sorted(widths)}")
    width = widths.pop()
    names = names or [f"f{i}" for i in range(width)]
    if len(names) != width:
        raise InvalidInput(f"sample {path}: {len(names)} column names for rows of {width} values")
    columns = list(zip(*rows, strict=True))
    features = tuple(
        TensorSpec(str(name), _column_dtype(col)) for name, col in zip(names, columns, strict=True)
    )
    return Signature(
        inputs=(TensorSpec("input", common_dtype(features), (-1, width)),),
        features=features,
        source="sample",
        example=tuple(tuple(row) for row in rows[:EXAMPLE_ROWS]),
    )


def _column_dtype(values: tuple[Any, ...]) -> str:
    if all(isinstance(v, bool) for v in values):
        return "bool"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return "int64"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


def merge_sample(model_sig: Signature | None, sample_sig: Signature | None, what: str) -> Signature:
    """The model's own signature, checked against the sample's and given its example rows."""
    if model_sig is None and sample_sig is None:
        raise InvalidInput(
            f"{what} declares no signature: pass --sample FILE with a few input rows"
        )
    if model_sig is None:
        assert sample_sig is not None
        return sample_sig
    if sample_sig is None:
        return model_sig
    n_model, n_sample = model_sig.n_features, sample_sig.n_features
    if n_model is not None and n_sample is not None and n_model != n_sample:
        raise InvalidInput(f"{what} takes {n_model} features but the sample rows have {n_sample}")
    return Signature(
        inputs=model_sig.inputs,
        outputs=model_sig.outputs,
        features=_typed_features(model_sig.features, sample_sig.features),
        output_kind=model_sig.output_kind,
        classes=model_sig.classes,
        source=model_sig.source,
        example=sample_sig.example,
        allows_missing=model_sig.allows_missing,
    )


def _typed_features(
    own: tuple[TensorSpec, ...], sample: tuple[TensorSpec, ...]
) -> tuple[TensorSpec, ...]:
    """The model's named features, with the dtypes its sample shows when it names the same
    columns (a model names its columns but not their types: text columns come from here)."""
    if not own:
        return sample
    if [spec.name for spec in own] == [spec.name for spec in sample]:
        return sample
    return own
