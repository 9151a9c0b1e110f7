"""Capturing a version's signature: from the model object, its MLmodel file, or a sample file."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from mlops.core.signature import Signature, TensorSpec
from mlops.documents import DEFAULT_LIMITS, NotADocument, clip, load_json, read_bytes
from mlops.errors import InvalidInput, UnreadableFile, WrongFlavor

EXAMPLE_ROWS = 5

ONNX_DTYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(string)": "string",
    "tensor(bool)": "bool",
}

MLFLOW_DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "string",
    "binary": "bytes",
    "datetime": "datetime64",
}


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (shape or [-1]))


def from_estimator(model: Any, what: str) -> Signature:
    """The signature of a fitted scikit-learn estimator or pipeline."""
    if not (hasattr(model, "predict") or hasattr(model, "transform")):
        raise WrongFlavor(
            f"{what} holds a {type(model).__name__}, not a model with predict() or transform()"
        )
    n = getattr(model, "n_features_in_", None)
    if n is None:
        raise InvalidInput(
            f"{what}: {type(model).__name__} does not say how many features it takes "
            "(is it fitted?); pass --sample FILE"
        )
    names = getattr(model, "feature_names_in_", None)
    features = (
        tuple(TensorSpec(str(name), "float64") for name in names) if names is not None else ()
    )
    classes = getattr(model, "classes_", None)
    if classes is not None:
        kind = "classification"
    elif getattr(model, "_estimator_type", None) == "regressor" or _is_regressor(model):
        kind = "regression"
    elif hasattr(model, "transform") and not hasattr(model, "predict"):
        kind = "transform"
    else:
        kind = "unknown"
    output = (
        TensorSpec("transform", "float64", (-1, _width_out(model)))
        if kind == "transform"
        else TensorSpec("predict", _output_dtype(kind, classes))
    )
    return Signature(
        inputs=(TensorSpec("input", "float64", (-1, int(n))),),
        outputs=(output,),
        features=features,
        output_kind=kind,
        classes=tuple(
            c.item() if hasattr(c, "item") else c for c in (classes if classes is not None else ())
        ),
        allows_missing=_allows_nan(model),
    )


def _width_out(transformer: Any) -> int:
    """How many columns a fitted transformer gives (-1 when it does not say)."""
    try:
        return len(transformer.get_feature_names_out())
    except Exception:
        return -1


def _allows_nan(model: Any) -> bool:
    try:
        return bool(model.__sklearn_tags__().input_tags.allow_nan)
    except Exception:
        return False


def _output_dtype(kind: str, classes: Any) -> str:
    if kind == "regression":
        return "float64"
    if classes is not None:
        dtype = np.asarray(classes).dtype
        return "string" if dtype.kind in "OUS" else dtype.name
    return "object"


def _is_regressor(model: Any) -> bool:
    try:
        from sklearn.base import is_regressor

        return bool(is_regressor(model))
    except Exception:
        return False


def from_onnx(session: Any) -> Signature:
    inputs = tuple(
        TensorSpec(i.name, ONNX_DTYPES.get(i.type, i.type), _dims(i.shape))
        for i in session.get_inputs()
    )
    outputs = tuple(
        TensorSpec(o.name, ONNX_DTYPES.get(o.type, o.type), _dims(o.shape))
        for o in session.get_outputs()
    )
    if any("label" in o.name.lower() for o in outputs):
        kind = "classification"
    elif len(outputs) == 1 and outputs[0].dtype.startswith("float"):
        kind = "regression"
    else:
        kind = "unknown"
    return Signature(inputs=inputs, outputs=outputs, output_kind=kind)


def _mlflow_specs(raw: Any, what: str) -> tuple[TensorSpec, ...]:
    specs = load_json(raw, what) if isinstance(raw, str) else (raw or [])
    if not isinstance(specs, list) or not all(isinstance(spec, dict) for spec in specs):
        raise InvalidInput(f"{what} must be a list of column or tensor specs")
    out = []
    for index, spec in enumerate(specs):
        name = str(spec.get("name", f"input_{index}"))
        if spec.get("type") == "tensor":
            tensor = spec.get("tensor-spec", {})
            if not isinstance(tensor, dict):
                raise InvalidInput(f"{what}: {name}: tensor-spec must be a mapping")
            out.append(
                TensorSpec(name, str(tensor.get("dtype", "unknown")), _dims(tensor.get("shape")))
            )
        else:
            out.append(
                TensorSpec(name, MLFLOW_DTYPES.get(str(spec.get("type")), str(spec.get("type"))))
            )
    return tuple(out)


def from_mlmodel(mlmodel: dict[str, Any], what: str = "the MLmodel file") -> Signature | None:
    """The signature an MLmodel file declares, or None when it declares none."""
    raw = mlmodel.get("signature")
    if not isinstance(raw, dict) or not raw.get("inputs"):
        return None
    inputs = _mlflow_specs(raw["inputs"], f"{what}: signature.inputs")
    outputs = _mlflow_specs(raw.get("outputs"), f"{what}: signature.outputs")
    columns = all(spec.shape == (-1,) for spec in inputs)
    return Signature(
        inputs=inputs
        if not columns
        else (TensorSpec("input", _common_dtype(inputs), (-1, len(inputs))),),
        outputs=outputs,
        features=inputs if columns else (),
        output_kind="unknown",
        source="mlflow",
    )


def _common_dtype(specs: tuple[TensorSpec, ...]) -> str:
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
        inputs=(TensorSpec("input", _common_dtype(features), (-1, width)),),
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


def check_predicts(flavor: str, model: Any, signature: Signature, what: str) -> None:
    """Run the model on the example rows: a version that cannot predict on them is refused."""
    if not signature.example:
        return
    rows = np.asarray(signature.example, dtype=object)
    try:
        if flavor == "onnx":
            spec = signature.inputs[0]
            dtype = {"float32": np.float32, "float64": np.float64, "int64": np.int64}.get(
                spec.dtype, np.float32
            )
            model.run(None, {spec.name: rows.astype(dtype)})
        elif hasattr(model, "predict"):
            model.predict(_input_for(model, rows))
        else:
            model.transform(_input_for(model, rows))
    except Exception as exc:
        raise InvalidInput(
            f"{what} failed to predict on the sample rows: {type(exc).__name__}: {exc}"
        ) from None


def _input_for(model: Any, rows: Any) -> Any:
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        import pandas as pd

        return pd.DataFrame(rows, columns=list(names)).infer_objects()
    try:
        return rows.astype(np.float64)
    except (TypeError, ValueError):
        return rows
