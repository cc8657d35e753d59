"""Reading finished runs back: run tables for leaderboards and evaluation tables, one run with its experiment,
metric values, logged tables and artifacts. The reports build on these; they never call MLflow themselves."""

from __future__ import annotations

from train.tracking.store import describe_store, setup_tracking


def finished_runs_frame(experiments: list[str], include_parents: bool = False):
    """FINISHED runs of the experiments (by name), one row each, as `mlflow.search_runs` returns them. Parent runs of
    seed sweeps (tag stance.parent=true) only repeat their children's numbers, so they are left out unless asked for.
    An experiment that does not exist raises LookupError."""
    import mlflow

    setup_tracking()
    missing = [n for n in experiments if mlflow.get_experiment_by_name(n) is None]
    if missing:
        known = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise LookupError(
            f"no experiment named {', '.join(map(repr, missing))} in {mlflow.get_tracking_uri()} (experiments: {known})"
        )
    runs = mlflow.search_runs(
        experiment_names=experiments, filter_string="attributes.status = 'FINISHED'", output_format="pandas"
    )
    if runs.empty:
        return runs
    if not include_parents and "tags.stance.parent" in runs:
        runs = runs[runs["tags.stance.parent"].fillna("false").str.lower() != "true"]
    return runs.reset_index(drop=True)


def top_level_runs_frame(experiment: str):
    """Top-level FINISHED runs of an experiment, newest first (a seed sweep's parent stands for its children)."""
    import mlflow

    setup_tracking()
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {experiment!r} in {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs(
        [exp.experiment_id],
        filter_string="attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="pandas",
    )
    if "tags.mlflow.parentRunId" in runs.columns:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    return runs.reset_index(drop=True)


class RunNotFound(LookupError):
    """No such run in the store; `detail` is MLflow's own message."""

    def __init__(self, message: str, detail: str):
        super().__init__(message)
        self.detail = detail


def get_run(run_id: str):
    """(run, its experiment); RunNotFound naming the store when there is no such run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    setup_tracking()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise RunNotFound(f"no run {run_id!r} in the store {describe_store()}: {e.message}", e.message) from None
    return run, client.get_experiment(run.info.experiment_id)


def run_metrics(run_id: str) -> dict[str, float]:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_run(run_id).data.metrics


def run_tags(run_id: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_run(run_id).data.tags


def logged_table(run_id: str, path: str) -> dict:
    """A table logged with mlflow.log_table, as {"columns": [...], "data": [...]}."""
    import mlflow

    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")


def artifact_paths(run_id: str, root: str = "") -> list[str]:
    """Evaluation and config artifacts (the model folder is listed once, not file by file)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    out = []
    for a in client.list_artifacts(run_id, root or None):
        if a.is_dir and a.path not in ("model",) and not a.path.startswith("model/"):
            out += artifact_paths(run_id, a.path)
        else:
            out.append(a.path)
    return sorted(out)


def download_run_artifact(run_id: str, path: str, dst: str) -> str:
    """A run's artifact as a local file; LookupError when it was not logged."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=dst)
    except (MlflowException, OSError) as e:
        raise LookupError(str(e)) from e


def tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()
