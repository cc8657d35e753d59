"""The MLflow run of `stance eval file --log`: a model scored on a study's coded sample, logged like a training run's
evaluation file (metrics `<file name>/macro_f1`, ..., the same artifacts in `<file name>/`) in the experiment
'stance-evaluations', tagged with the model URI, its registry version and run, and the file's sha256. Where the model
is an MLflow logged model, the metrics are also linked to it (they show on the model's page in the MLflow UI)."""

from __future__ import annotations

import warnings
from pathlib import Path

from train.data.selection import eval_set_name  # the name data.eval_files get in training runs
from train.metrics import metric_key
from train.naming import EVALUATION_EXPERIMENT
from train.schema import LABELS
from train.tracking.artifacts import log_evaluation
from train.tracking.runs import git_info, process_tags
from train.tracking.store import get_experiment_id, setup_tracking


def source_run_and_model(uri: str) -> tuple[str, str]:
    """(run id, logged model id) of the run that logged the model behind a runs:/ or models:/ URI ("" when unknown)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        if uri.startswith("runs:/"):
            run_id = uri[len("runs:/") :].split("/")[0]
        elif uri.startswith("models:/"):
            from train.tracking.registry import registered_model_run

            run_id = registered_model_run(uri)
        else:
            return "", ""
        if not run_id:
            return "", ""
        outputs = client.get_run(run_id).outputs
        models = outputs.model_outputs if outputs else []
        return run_id, models[0].model_id if models else ""
    except (MlflowException, LookupError):
        return "", ""


def log_file_evaluation(ev, experiment: str = EVALUATION_EXPERIMENT) -> str:
    """Log a `train.reports.file_eval.FileEvaluation` as a finished run; returns the run id."""
    import mlflow

    from train.tracking.runs import closing_run

    setup_tracking()
    name = eval_set_name(ev.path)
    run_id, model_id = source_run_and_model(ev.model_uri)
    scored = ev.scored.assign(stance=ev.scored["gold"])
    scored = scored.assign(id=scored[ev.id_column].astype(str) if ev.id_column else scored["line"].astype(str))
    run = mlflow.start_run(experiment_id=get_experiment_id(experiment), run_name=f"eval-{name}")
    with closing_run():
        mlflow.set_tags(
            {
                **git_info(),
                **process_tags(),
                "stance.evaluation": "file",
                "stance.model_uri": ev.model_uri,
                "stance.model_version": ev.model_version,
                "stance.model_run_id": run_id,
                "stance.eval_file": ev.path,
                "stance.eval_file_sha256": ev.sha256,
                "stance.eval_sets": name,
            }
        )
        mlflow.log_params(
            {
                "model": ev.model_uri,
                "eval_file": ev.path,
                "n_rows": len(ev.rows),
                "n_scored": len(scored),
                "long_text": ev.long_text,
            }
        )
        metrics = {metric_key(name, k): v for k, v in ev.metrics.items()}
        with warnings.catch_warnings():  # "the source can be interpreted in multiple ways": a local file, as meant
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                scored[["id", "text", "language", "speaker_group", "stance"]].reset_index(drop=True),
                source=str(Path(ev.path).resolve()),
                name=name,
                targets="stance",
                digest=ev.sha256[:8],
            )
        mlflow.log_input(dataset, context="evaluation")
        mlflow.log_metrics(metrics, model_id=model_id or None, dataset=dataset if model_id else None)
        proba = scored[[f"prob_{l}" for l in LABELS]].to_numpy(float)
        log_evaluation(scored.reset_index(drop=True), proba, ev.metrics, prefix=name)
    return run.info.run_id
