"""Loading an artifact's verified bytes into a model object, per flavor.

Loaders take bytes that were already hashed, so what is checked is what is loaded.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from mlops.errors import DependencyFailed, UntrustedArtifact, WrongFlavor
from mlops.registry.params import parse_params

TRUST_HINT = "pass --trust (or set MLOPS_TRUST=1) only if you trust where the file came from"


def require_trust(flavor: str, trusted: bool, what: str) -> None:
    if not trusted:
        raise UntrustedArtifact(
            f"{what} is a {flavor} artifact: loading it runs code from the file; {TRUST_HINT}"
        )


def skops_untrusted_types(data: bytes) -> list[str]:
    import skops.io

    try:
        return list(skops.io.get_untrusted_types(data=data))
    except Exception as exc:
        raise WrongFlavor(f"not a readable skops file: {exc}") from None


def load_bytes(flavor: str, data: bytes, *, trusted: bool, what: str) -> Any:
    """The model object held by `data`. Pickle-based flavors need `trusted`."""
    if flavor == "sklearn":
        require_trust(flavor, trusted, what)
        import joblib

        try:
            return joblib.load(io.BytesIO(data))
        except Exception as exc:
            raise WrongFlavor(
                f"{what} could not be loaded as a joblib/pickle file: {exc}"
            ) from None
    if flavor == "skops":
        import skops.io

        # Whatever skops does not trust by default may run code when it is rebuilt (even
        # inside scikit-learn or NumPy: a numpy DataSource deletes a folder when collected).
        untrusted = skops_untrusted_types(data)
        if untrusted and not trusted:
            raise UntrustedArtifact(
                f"{what} is a skops file that holds types skops does not trust by default "
                f"({', '.join(untrusted[:5])}{', …' if len(untrusted) > 5 else ''}); {TRUST_HINT}"
            )
        try:
            return skops.io.loads(data, trusted=untrusted or None)
        except Exception as exc:
            raise WrongFlavor(f"{what} could not be loaded as a skops file: {exc}") from None
    if flavor == "onnx":
        import onnxruntime as ort

        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            return ort.InferenceSession(
                data, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise WrongFlavor(f"{what} could not be loaded by onnxruntime: {exc}") from None
    if flavor == "params":
        return parse_params(data, what)
    raise WrongFlavor(f"{flavor} artifacts are folders, not single files")


def load_mlflow(folder: Path, *, trusted: bool, what: str) -> Any:
    require_trust("mlflow", trusted, what)
    try:
        import mlflow.pyfunc
    except ImportError:
        raise DependencyFailed(
            f"{what} is an MLflow model: install mlflow to load it (pip install 'mlops[mlflow]')"
        ) from None
    try:
        return mlflow.pyfunc.load_model(str(folder))
    except Exception as exc:
        raise WrongFlavor(f"{what} could not be loaded by mlflow.pyfunc: {exc}") from None
