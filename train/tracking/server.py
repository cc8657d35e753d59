"""The MLflow UI server on the project's store (`stance ui`, tests, screenshots) and the saved runs-table view.

The server runs in its own process group (`mlflow server` starts worker processes), so stopping it stops them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from train.runtime import store_dir
from train.tracking.store import setup_tracking


class UIError(RuntimeError):
    """The UI (server or browser) cannot run or did not answer."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def server_command(port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment for the project's tracking store."""
    uri = setup_tracking()
    if uri.startswith(("http://", "https://", "databricks")):
        raise UIError(f"MLFLOW_TRACKING_URI is a tracking server already ({uri}): open it in a browser instead")
    artifacts = store_dir() / "artifacts"
    argv = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        uri,
        "--default-artifact-root",
        str(artifacts),
    ]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # job runner: 37 s start-up instead of 9 s
    return argv, env


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UIError(f"mlflow server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise UIError(f"mlflow server did not answer {url}/health within {timeout:.0f} s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen, grace: float = 10) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def serve(port: int, host: str, timeout: float, log: Path | None):
    if _port_in_use(host, port):
        raise UIError(f"port {port} on {host} is in use: pick another with --port")
    argv, env = server_command(port, host)
    url = f"http://{host}:{port}"
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stance-ui-"))) / "server.log"
        fh = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(
            argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        try:
            _wait_healthy(url, proc, log, timeout)
            yield url, proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def running_ui(port: int | None = None, host: str = "127.0.0.1", timeout: float = 120, log: Path | None = None):
    """Start the MLflow UI on the project's store; yields its URL once /health answers; stops it (and its workers) on exit."""
    with serve(port or free_port(host), host, timeout, log) as (url, _proc):
        yield url


def experiment_runs_url(base_url: str, experiment_id: str, view_key: str | None = None) -> str:
    # the experiment's root route shows an overview page; the runs table lives under /runs (stack notes)
    return f"{base_url}/#/experiments/{experiment_id}/runs" + (f"?viewStateShareKey={view_key}" if view_key else "")


def compare_runs_url(base_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The UI's compare view of these runs (parameters, metrics, and the artifacts at the root that all of them have)."""
    from urllib.parse import quote

    return f"{base_url}/#/compare-runs?runs={quote(json.dumps(list(run_ids)))}&experiments={quote(json.dumps([experiment_id]))}"


def metrics_view(experiment_id: str, metric: str = "f1/all") -> str:
    """Save a runs-table view that shows the comparison metrics, sorted by `metric`; returns its share key.

    The UI shows no metric columns until someone picks them, per browser. A view saved the way the UI's own "Share"
    button does (an experiment tag mlflow.sharedViewState.<key> holding the view as JSON) opens with them for anyone.
    The key is a digest of the view, so saving it again changes nothing.

    The table draws only the columns in view: at 1,600 px (with the UI's assistant panel open) about eight narrow
    ones after the run name. So the view starts with the at-a-glance metrics (train.tracking.artifacts.log_summary,
    3 decimals): macro-F1 of all rows, the core languages in their order, the others pooled, then the row counts
    (tag n_eval), the interval, the first extra evaluation set's macro-F1, and the model family. Runs logged before
    the summary existed get the exact metrics instead.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from train.schema import CORE_LANGUAGES

    runs = mlflow.search_runs([experiment_id], max_results=1000)
    have = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    tags = {c.removeprefix("tags.") for c in runs.columns if c.startswith("tags.")}
    glance = "f1/all" in have
    if metric == "f1/all" and not glance:
        metric = "macro_f1"
    extra = sorted({m.split("/f1/")[0] for m in have if "/f1/" in m})[:1]  # e.g. realquotes_dev
    if glance:
        first = [metric, "f1/all", *[f"f1/{l}" for l in CORE_LANGUAGES], "f1/other"]
        then = ["f1/ci_low", "f1/ci_high", *[f"{x}/f1/all" for x in extra]]
    else:
        first = [metric, "macro_f1", *[f"macro_f1_lang_{l}" for l in CORE_LANGUAGES]]
        then = ["accuracy", "ece", *sorted(m for m in have if m.startswith("macro_f1_lang_"))]
    first, then = [m for m in dict.fromkeys(first) if m in have], [m for m in dict.fromkeys(then) if m in have and m not in first]
    holdout = "tags.holdout" in runs.columns and (runs["tags.holdout"].fillna("none") != "none").any()
    columns = [
        *[f"metrics.`{m}`" for m in first],
        *(["tags.`n_eval`"] if "n_eval" in tags else []),
        *[f"metrics.`{m}`" for m in then],
        "tags.`model_family`",
        *(["tags.`holdout`"] if holdout else []),
    ]
    # as wide as the header (the default cuts macro_f1_lang_xx); the counts as wide as their text
    widths = {f"metrics.`{m}`": max(56, 7 * len(m) + 24) for m in first + then}
    widths["tags.`n_eval`"] = 330
    state = {
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": widths,
        "orderByKey": f"metrics.`{metric}`",
        "orderByAsc": metric.endswith(("ece", "train_seconds")),
    }
    value = json.dumps(state, sort_keys=True)
    key = hashlib.sha256(value.encode()).hexdigest()
    MlflowClient().set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", value)
    return key


def experiment_views(url: str) -> list[tuple[str, str]]:
    """(experiment name, URL of its runs table with the metrics view) for every experiment worth showing."""
    import mlflow

    out = []
    for exp in mlflow.search_experiments():
        if exp.name != "Default" or mlflow.search_runs([exp.experiment_id], max_results=1).shape[0]:
            try:
                key = metrics_view(exp.experiment_id)
            except Exception:  # noqa: BLE001 - a read-only store still gets the plain table
                key = None
            out.append((exp.name, experiment_runs_url(url, exp.experiment_id, key)))
    return out
