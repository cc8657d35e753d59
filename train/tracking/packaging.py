"""The stance model as an MLflow pyfunc ("models from code": train/tracking/pyfunc.py plus the train package, nothing
pickled), with its requirements pinned at the installed versions: logged into a run, or saved to a folder (Spark)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distributions, version
from pathlib import Path

import numpy as np

from train.inference.rows import output_frame
from train.schema import LABELS

PYFUNC_FILE = Path(__file__).with_name("pyfunc.py")
CODE_PATH = Path(__file__).resolve().parents[1]  # the whole train package travels with the model
PYFUNC_REQUIREMENTS = ["torch", "transformers", "tokenizers", "safetensors", "scikit-learn", "skops", "numpy", "pandas", "mlflow"]


def pinned_requirements() -> list[str]:
    """The pyfunc's requirements at the exact versions installed now, so the environment that produced a run's
    numbers is the one `mlflow models serve` or a Spark cluster rebuilds (unpinned names would take today's releases)."""
    out = []
    for name in PYFUNC_REQUIREMENTS:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(name)
    return out


def installed_packages() -> str:
    """Every installed distribution at its version, in requirements format: logged with each run so the environment
    that produced its numbers can be rebuilt (`pip install -r`), beside the pins of .ci/constraints.txt."""
    names = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return "".join(f"{n}=={v}\n" for n, v in sorted(names.items()))


def _pyfunc_spec(model_dir: Path) -> dict:
    """What both ways of storing the pyfunc share."""
    return {
        "python_model": str(PYFUNC_FILE),
        "artifacts": {"stance_model": str(model_dir)},
        "code_paths": [str(CODE_PATH)],
        "pip_requirements": pinned_requirements(),
    }  # inference of requirements is slow and adds torchvision (stack notes)


def log_stance_model(model_dir: Path, example_texts: list[str], register_as: str | None = None):
    """Log a saved model directory as an MLflow pyfunc into the active run. Training registers it only after
    `stance runs verify` passed (pipeline.verify_and_register)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"text": example_texts[:3]})
    dummy = output_frame(np.full((len(example), len(LABELS)), 1 / len(LABELS), dtype=np.float32))
    signature = infer_signature(example, dummy)
    return mlflow.pyfunc.log_model(
        name="model", signature=signature, registered_model_name=register_as, **_pyfunc_spec(model_dir)
    )


def save_stance_pyfunc(model_dir: Path, path: Path) -> Path:
    """The same pyfunc saved to a folder (the Spark UDF wraps a plain stance model directory this way)."""
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(str(path), **_pyfunc_spec(model_dir))
    return path
