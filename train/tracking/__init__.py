"""MLflow, and only here: every MLflow call of the project is in this package (mlflow itself is imported lazily).

store (where runs go), runs (a run's lifecycle, resuming, the pipeline's logging calls), artifacts + plots (what a run
logs about its data and evaluation), packaging + pyfunc (the model as an MLflow pyfunc), registry (model URIs ->
loaded models), queries (finished runs read back for reports), predict_runs (`stance predict --log-mlflow`),
spark (the Spark UDF engine), server (the MLflow UI), identity (a model's citable identity), relocate (a store whose
project folder was moved or copied).
"""

from train.runtime import store_dir
from train.tracking.artifacts import SCORED_FILE, log_dataset, log_evaluation, log_scored_rows, predictions_table
from train.tracking.packaging import PYFUNC_FILE, installed_packages, log_stance_model, pinned_requirements, save_stance_pyfunc
from train.tracking.runs import (
    ResumeError,
    TrainingInterrupted,
    check_resume,
    closing_run,
    find_resumable_run,
    git_info,
    process_tags,
    reconcile_stale_runs,
)
from train.tracking.store import describe_store, get_experiment_id, is_local_store, setup_tracking

__all__ = [
    "PYFUNC_FILE",
    "SCORED_FILE",
    "ResumeError",
    "TrainingInterrupted",
    "check_resume",
    "closing_run",
    "describe_store",
    "find_resumable_run",
    "get_experiment_id",
    "git_info",
    "installed_packages",
    "is_local_store",
    "log_dataset",
    "log_evaluation",
    "log_scored_rows",
    "log_stance_model",
    "pinned_requirements",
    "predictions_table",
    "process_tags",
    "reconcile_stale_runs",
    "save_stance_pyfunc",
    "setup_tracking",
    "store_dir",
]
