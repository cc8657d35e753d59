"""MLflow for `stance analyze`: the scored evaluation rows of the run behind a model (the default labeled rows for the
correction), and the analysis run (`--log`) linked to the model version and the input file's digest."""

from __future__ import annotations

from pathlib import Path

from train.formats import sha256_file
from train.tracking.runs import git_info, process_tags
from train.tracking.store import describe_store, get_experiment_id, setup_tracking

ANALYSIS_EXPERIMENT = "stance-analysis"
EVAL_SCORED = "eval/scored.parquet"  # train.tracking.artifacts.log_scored_rows under the evaluation prefix


def model_run_id(model_uri: str) -> str:
    """The run that logged a runs:/ or models:/ model ("" when the URI names neither)."""
    if model_uri.startswith("runs:/"):
        return model_uri[len("runs:/") :].split("/")[0]
    if model_uri.startswith("models:/"):
        from train.tracking.registry import registered_model_run

        return registered_model_run(model_uri)
    return ""


def evaluation_rows(model_uri: str, dst: Path, artifact: str = EVAL_SCORED) -> tuple[Path, str]:
    """(local path of the model run's scored evaluation rows, run id). LookupError when there is none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    setup_tracking()
    run_id = model_run_id(model_uri)
    if not run_id:
        raise LookupError(f"{model_uri}: not an MLflow model URI (runs:/..., models:/...), so no run with evaluation rows")
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact, dst_path=str(dst))
    except MlflowException as e:
        raise LookupError(f"run {run_id}: no artifact {artifact} in the MLflow store {describe_store()}: {e.message}") from e
    return Path(path), run_id


def log_analysis_run(params: dict, model_uri: str, predictions: Path, files: list[Path], metrics: dict) -> str:
    """One FINISHED run in ANALYSIS_EXPERIMENT: parameters, the model URI and version, the input's sha256 (tag and
    dataset input), summary metrics and every output file as an artifact. Returns the run id."""
    import mlflow
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    from train.tracking.registry import registered_version

    setup_tracking()
    digest = sha256_file(predictions)
    try:  # a model deleted from the registry since: the URI and the digest still link the analysis
        version = registered_version(model_uri) if model_uri.startswith(("runs:/", "models:/")) else ""
        run_id = model_run_id(model_uri)
    except Exception:
        version, run_id = "", ""
    with mlflow.start_run(experiment_id=get_experiment_id(ANALYSIS_EXPERIMENT), run_name=f"analyze-{predictions.stem}") as run:
        mlflow.log_params(params)
        mlflow.set_tags(
            {
                **git_info(),
                **process_tags(),
                "model_uri": model_uri,
                "model_version": version,
                "model_run_id": run_id,
                "input_sha256": digest,
            }
        )
        mlflow.log_input(
            MetaDataset(HTTPDatasetSource(predictions.resolve().as_uri()), name=predictions.name, digest=digest[:16]),
            context="analysis",
        )
        mlflow.log_metrics(metrics)
        for f in files:
            mlflow.log_artifact(str(f), "analysis")
    return run.info.run_id
