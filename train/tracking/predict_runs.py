"""The MLflow run of `stance predict --log-mlflow`: input digest, counts, label distribution and rows/s, in the
experiment 'stance-inference'; closed KILLED on Ctrl-C or SIGTERM, FAILED on an error."""

from __future__ import annotations

import signal
from pathlib import Path

from train.formats import sha256_file
from train.naming import INFERENCE_EXPERIMENT
from train.tracking.runs import TrainingInterrupted, git_info, process_tags, reconcile_stale_runs
from train.tracking.store import get_experiment_id, setup_tracking

_sigterm_before: list = []  # the SIGTERM handler _start_mlflow_run replaced


def _raise_on_sigterm(signum, frame):
    raise TrainingInterrupted(f"received signal {signum}")


def start_predict_run(model, input, output, text_column, chunk_size, engine, backend="torch", int8=False):
    """Open the run of `stance predict --log-mlflow` in the INFERENCE_EXPERIMENT (params, git and process tags)."""
    import mlflow

    setup_tracking()
    exp_id = get_experiment_id(INFERENCE_EXPERIMENT)
    reconcile_stale_runs(exp_id)
    # SIGTERM (what schedulers send) would end the process with the run left RUNNING: raise instead, so that
    # predict_cmd closes the run KILLED as on Ctrl-C (as closing_run does for training); end_predict_run undoes it
    _sigterm_before.append(signal.signal(signal.SIGTERM, _raise_on_sigterm))
    run = mlflow.start_run(experiment_id=exp_id, run_name=f"predict-{Path(input).stem}")
    mlflow.log_params(
        {
            "model": model,
            "input": str(Path(input).resolve()),
            "output": str(Path(output).resolve()),
            "text_column": text_column,
            "chunk_size": chunk_size,
            "engine": engine,
            "backend": backend,
            "int8": int8,
        }
    )
    mlflow.set_tags({**git_info(), **process_tags()})
    return run


def end_predict_run(run, result, status: str, error: str | None = None) -> None:
    """Close it: on success with the input's digest as a dataset, counts, label distribution and rows/s."""
    if run is None:
        return
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not leave the run half closed
    try:
        _close_mlflow_run(result, status, error)
    finally:
        signal.signal(signal.SIGTERM, _sigterm_before.pop() if _sigterm_before else signal.SIG_DFL)


def _close_mlflow_run(result, status: str, error: str | None) -> None:
    import mlflow

    if error:
        mlflow.set_tag("stance.error", error[:5000])
    if result is not None:
        summary, uri, version, input = result
        digest = getattr(summary, "input_sha256", "") or sha256_file(Path(input))
        mlflow.set_tags({"model_uri": uri, "model_version": version, "input_sha256": digest})
        from mlflow.data.http_dataset_source import HTTPDatasetSource
        from mlflow.data.meta_dataset import MetaDataset

        # the input as a dataset with its content digest (lineage: which file exactly was scored)
        mlflow.log_input(
            MetaDataset(HTTPDatasetSource(Path(input).resolve().as_uri()), name=Path(input).name, digest=digest[:16]),
            context="inference",
        )
        metrics = {
            "rows": summary.rows,
            "bad_rows": summary.bad_rows,
            "rows_per_s": summary.rows_per_s,
            "seconds": summary.seconds,
            "chunks_computed": summary.chunks_computed,
            "chunks_reused": summary.chunks_reused,
        }
        good = max(1, summary.rows - summary.bad_rows)
        for label, n in summary.labels.items():
            metrics[f"count_{label}"] = n
            metrics[f"frac_{label}"] = n / good
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"labels": summary.labels, "bad_row_reasons": summary.errors}, "inference_summary.json")
    mlflow.end_run(status=status)
