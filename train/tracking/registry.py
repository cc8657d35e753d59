"""Models by URI: a local directory or an MLflow model URI (runs:/, models:/NAME/VERSION, models:/NAME@ALIAS) resolved
to a local stance model directory, its registry version, and loaded with the chosen device and backend: the one way
`stance predict` and `stance runs verify` (which must test exactly this path) get a model."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from train.inference.rows import InferenceError
from train.models import MODEL_CARD, BackendError, load_stance_model
from train.runtime import pick_device, set_threads
from train.tracking.store import describe_store, setup_tracking


def quiet_libraries() -> None:
    """Keep stderr for our own progress and results: no weight-loading or download bars, no over-length warnings
    (long rows are reported per row)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_for_predict(model: str, tmp: Path, device="auto", precision="auto", threads=0, backend="torch", int8=False):
    """The one way `stance predict` (and `stance runs verify`, which must test exactly this path) gets a model:
    resolve the URI or directory, pick the device, load, attach the backend.
    Returns (model, uri, version, device, local model directory)."""
    model_dir, uri, version = resolve_model(model, tmp)
    dev = ("cpu" if backend == "onnx" else pick_device()) if device == "auto" else device
    if dev == "cpu":
        set_threads(threads)
    try:
        stance = load_stance_model(model_dir, device=dev, precision=precision, backend=backend, int8=int8, threads=threads)
    except BackendError as e:
        raise InferenceError(str(e)) from e
    except RuntimeError as e:  # the ONNX backend: onnxruntime missing, export failed
        if backend != "onnx":
            raise
        raise InferenceError(str(e)) from e
    except (OSError, ValueError, KeyError) as e:
        raise InferenceError(f"{model}: cannot load the model: {e}") from e
    return stance, uri, version, dev, model_dir


def stance_dir_in(path: Path) -> Path:
    """The stance model directory inside `path`: itself, or the pyfunc's `stance_model` artifact of an MLflow model."""
    if (path / MODEL_CARD).is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        flavor = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors", {}).get("python_function", {})
        rel = (flavor.get("artifacts") or {}).get("stance_model", {}).get("path")
        if rel:
            target = (path / rel).resolve()
            # a tampered MLmodel must not point the loader outside the model directory (../, absolute paths, links)
            if not target.is_relative_to(path.resolve()):
                raise InferenceError(f"{mlmodel}: artifact path {rel!r} leads outside the model directory")
            if (target / MODEL_CARD).is_file():
                return target
        raise InferenceError(f"{path}: an MLflow model without a stance_model artifact (not logged by `stance train`)")
    raise InferenceError(f"{path}: neither a stance model directory ({MODEL_CARD}) nor an MLflow model directory (MLmodel)")


def resolve_model(spec: str, download_to: Path) -> tuple[Path, str, str]:
    """(local stance model dir, model URI to record, registered version or "")."""
    local = Path(spec)
    if local.exists():
        return stance_dir_in(local), str(local.resolve()), ""
    if re.fullmatch(r"[0-9a-f]{32}", spec):  # a bare run id, as `stance runs verify` takes it: that run's model
        spec = f"runs:/{spec}/model"
    if not spec.startswith(("runs:/", "models:/")) and "://" not in spec:
        raise InferenceError(f"{spec}: no such model directory, and not an MLflow model URI (runs:/..., models:/...)")
    import mlflow
    from mlflow.exceptions import MlflowException

    setup_tracking()
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(download_to)))
        version = registered_version(spec)
    except MlflowException as e:
        raise InferenceError(f"{spec}: cannot fetch the model from the MLflow store {describe_store()}: {e.message}") from e
    return stance_dir_in(path), spec, version


def registered_version(uri: str) -> str:
    """The model-registry version behind a URI: explicit, via an alias/stage, or the registration of a run's model."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if uri.startswith("models:/"):
        ref = uri[len("models:/") :].strip("/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias.split("/")[0]).version)
        name, _, rest = ref.partition("/")
        tag = rest.split("/")[0]
        if tag.isdigit():
            return tag
        if tag and not name.startswith("m-"):
            versions = client.get_latest_versions(name, None if tag.lower() == "latest" else [tag])
            return str(max(int(v.version) for v in versions)) if versions else ""
        return ""
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/") :].split("/")[0]
        versions = client.search_model_versions(f"run_id='{run_id}'")
        return str(max(int(v.version) for v in versions)) if versions else ""
    return ""


def registered_model_run(spec: str) -> str:
    """The run that logged the model behind a models:/ URI ("" when the registry does not say); LookupError when the
    registry does not know the model."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    name = spec[len("models:/") :].strip("/").split("/")[0].split("@")[0]
    try:
        version = registered_version(spec)
        return MlflowClient().get_model_version(name, version).run_id if version else ""
    except MlflowException as e:
        raise LookupError(f"{spec}: not in the registry: {e.message}") from e
