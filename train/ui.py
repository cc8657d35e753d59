"""`stance ui`: the MLflow UI on the project's store, and a headless Chromium to look at it from tests and scripts.

The server runs in its own process group (`mlflow server` starts worker processes), so stopping it stops them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import typer

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Flags that work headless in a container (stack notes): no sandbox, no GPU, nothing phoning home.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--hide-scrollbars")


class UIError(RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


def server_command(port: int, host: str = "127.0.0.1") -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and environment for the project's tracking store."""
    from train.tracking import setup_tracking, store_dir

    uri = setup_tracking()
    if uri.startswith(("http://", "https://", "databricks")):
        raise UIError(f"MLFLOW_TRACKING_URI is a tracking server already ({uri}): open it in a browser instead")
    artifacts = store_dir() / "artifacts"
    argv = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port), "--workers", "1",
            "--backend-store-uri", uri, "--default-artifact-root", str(artifacts)]
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
def _serve(port: int, host: str, timeout: float, log: Path | None):
    if _port_in_use(host, port):
        raise UIError(f"port {port} on {host} is in use: pick another with --port")
    argv, env = server_command(port, host)
    url = f"http://{host}:{port}"
    with contextlib.ExitStack() as stack:
        if log is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stance-ui-"))) / "server.log"
        fh = stack.enter_context(open(log, "wb"))
        proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_healthy(url, proc, log, timeout)
            yield url, proc
        finally:
            _stop(proc)


@contextlib.contextmanager
def running_ui(port: int | None = None, host: str = "127.0.0.1", timeout: float = 120, log: Path | None = None):
    """Start the MLflow UI on the project's store; yields its URL once /health answers; stops it (and its workers) on exit."""
    with _serve(port or free_port(host), host, timeout, log) as (url, _proc):
        yield url


def experiment_runs_url(base_url: str, experiment_id: str, view_key: str | None = None) -> str:
    # the experiment's root route shows an overview page; the runs table lives under /runs (stack notes)
    return f"{base_url}/#/experiments/{experiment_id}/runs" + (f"?viewStateShareKey={view_key}" if view_key else "")


def metrics_view(experiment_id: str, metric: str = "macro_f1") -> str:
    """Save a runs-table view that shows the comparison metrics, sorted by `metric`; returns its share key.

    The UI shows no metric columns until someone picks them, per browser. A view saved the way the UI's own "Share"
    button does (an experiment tag mlflow.sharedViewState.<key> holding the view as JSON) opens with them for anyone.
    The key is a digest of the view, so saving it again changes nothing.
    """
    import hashlib
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    runs = mlflow.search_runs([experiment_id], max_results=1000)
    have = {c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.")}
    wanted = [metric, "macro_f1", "accuracy", "ece", *sorted(m for m in have if m.startswith("macro_f1_lang_")), "train_seconds"]
    metrics = [m for m in dict.fromkeys(wanted) if m in have]
    columns = ["tags.`model_family`", "tags.`holdout`", *[f"metrics.`{m}`" for m in metrics]]
    # metric columns as wide as their header (the default cuts macro_f1_lang_xx)
    widths = {f"metrics.`{m}`": max(90, 7 * len(m) + 40) for m in metrics}
    state = {"selectedColumns": columns, "columnOrder": columns, "columnWidths": widths, "orderByKey": f"metrics.`{metric}`",
             "orderByAsc": metric in ("ece", "train_seconds")}
    value = json.dumps(state, sort_keys=True)
    key = hashlib.sha256(value.encode()).hexdigest()
    MlflowClient().set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", value)
    return key


def ui_cmd(
    port: int = typer.Option(5000, "--port", "-p", help="Port to listen on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 exposes the UI to your network)."),
):
    """Start the MLflow UI on this project's runs; Ctrl-C stops it."""
    try:
        with _serve(port, host, timeout=120, log=None) as (url, proc):
            from train.tracking import describe_store

            typer.echo(f"MLflow UI: {url}  (Ctrl-C to stop)\nstore: {describe_store()}")
            _print_experiment_views(url)
            old = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:
                code = proc.wait()
            finally:
                signal.signal(signal.SIGTERM, old)
            typer.secho(f"mlflow server exited with {code}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    except UIError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def _print_experiment_views(url: str) -> None:
    import mlflow

    for exp in mlflow.search_experiments():
        if exp.name != "Default" or mlflow.search_runs([exp.experiment_id], max_results=1).shape[0]:
            try:
                key = metrics_view(exp.experiment_id)
            except Exception:  # noqa: BLE001 - a read-only store still gets the plain table
                key = None
            typer.echo(f"  {exp.name}: {experiment_runs_url(url, exp.experiment_id, key)}")


# -- headless Chromium ---------------------------------------------------------------------------------------------

def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(url: str, *extra: str, budget_ms: int = 20000, timeout: float = 180) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise UIError("chromium is not installed (Debian: apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="stance-chromium-") as profile:
        argv = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        raise UIError(f"chromium exited with {res.returncode}: {res.stderr[-2000:]}")
    return res


def dump_dom(url: str, window: tuple[int, int] = (2400, 1200), budget_ms: int = 20000) -> str:
    """The page's DOM after its scripts ran (virtual time lets the single-page app fetch and render)."""
    return _chromium(url, "--dump-dom", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms).stdout


def screenshot(url: str, out: Path, window: tuple[int, int] = (1800, 1000), budget_ms: int = 20000) -> Path:
    """A PNG of the rendered page, written atomically (Chromium writes to a temp name, then it is renamed)."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp.png")
    try:
        _chromium(url, f"--screenshot={tmp}", f"--window-size={window[0]},{window[1]}", budget_ms=budget_ms)
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise UIError(f"chromium wrote no screenshot for {url}")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
