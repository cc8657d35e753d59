"""A run's lifecycle: opening and always closing it (FINISHED / FAILED / KILLED with the reason), who owns a RUNNING
run and closing those whose process is gone, git and process tags, resuming an interrupted run, and the thin logging
calls the pipeline makes. Every MLflow call of the project is in this package."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a terminated run is closed like one stopped with Ctrl-C."""


@contextlib.contextmanager
def closing_run(error_prefix=lambda: ""):
    """Close the run the caller just started on every way out of the block: FINISHED on success, FAILED on an error,
    KILLED on Ctrl-C or SIGTERM, with the reason in its `stance.error` tag. Nested runs the block left open are closed
    first, so no run is ever left RUNNING (SIGKILL aside: see reconcile_stale_runs)."""
    import mlflow

    own = mlflow.active_run().info.run_id

    def on_signal(signum, frame):
        raise TrainingInterrupted(f"received signal {signum}")

    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
        mlflow.end_run("FINISHED")
    except BaseException as e:  # noqa: BLE001 - every way out must close the run with the reason
        # an exception may say how its run ends (a pruned `stance tune` trial: KILLED, tagged stance.pruned)
        status = getattr(e, "run_status", None) or ("KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        try:
            while mlflow.active_run() and mlflow.active_run().info.run_id != own:
                mlflow.end_run(status)
            mlflow.set_tags(
                {"stance.error": f"{error_prefix()}{type(e).__name__}: {e}"[:5000], **(getattr(e, "run_tags", None) or {})}
            )
        finally:
            mlflow.end_run(status)
        raise
    finally:
        signal.signal(signal.SIGTERM, old_term)


def git_info() -> dict[str, str]:
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    from train.tracking.identity import VERSION_TAG, tool_version

    return {
        "git.commit": commit or "unknown",
        "git.dirty": str(bool(dirty)).lower() if commit else "unknown",
        VERSION_TAG: tool_version(),  # with the commit: the citable identity of the code that trained the run
    }


def process_tags() -> dict[str, str]:
    """Who owns a run while it is RUNNING: reconcile_stale_runs closes it once that process is gone. The start time
    tells the owner from a later process that was given the same pid."""
    return {"stance.pid": str(os.getpid()), "stance.host": socket.gethostname(), "stance.pid_start": _pid_start(os.getpid())}


def _pid_start(pid: int) -> str:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat field 22); "" where there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # after the command name (which may hold spaces), field 3 is index 0


def reconcile_stale_runs(experiment_id: str) -> list[str]:
    """Runs left RUNNING by a process that is gone (SIGKILL, power loss) are marked FAILED, never left running."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    fixed = []
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=200):
        tags = run.data.tags
        pid, host = tags.get("stance.pid"), tags.get("stance.host")
        if not pid or host != socket.gethostname() or _pid_alive(int(pid), tags.get("stance.pid_start", "")):
            continue
        client.set_tag(run.info.run_id, "stance.error", f"process {pid} ended without closing the run (killed?)")
        client.set_terminated(run.info.run_id, status="FAILED")
        fixed.append(run.info.run_id)
    return fixed


def _pid_alive(pid: int, start: str = "") -> bool:
    """Whether the process that started the run (pid, and its start time when recorded) still runs."""
    if start and _pid_start(pid):
        return _pid_start(pid) == start  # same pid, other start time: the pid was reused
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie or a reused pid of another program (runs logged before stance.pid_start): compare the command line
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        return b"stance" in cmd or b"python" in cmd
    except OSError:
        return True


# -- resuming an interrupted run --------------------------------------------------------------------------------------


class ResumeError(ValueError):
    """--resume cannot continue: the run is not this configuration's, or not resumable at all."""


def check_resume(experiment: str, params: dict[str, str], exp_id: str, digest: str, run_id: str | None) -> None:
    """Refuse to resume a run under a configuration other than the one it was started with: its checkpoint's
    optimizer state and epochs belong to that configuration, and its logged params would describe another run."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except MlflowException as e:
            raise ResumeError(f"--run-id {run_id}: no such run ({e.message})") from e
        if run.info.experiment_id != exp_id:
            raise ResumeError(f"--run-id {run_id}: that run is in another experiment than '{experiment}'")
        if run.info.status == "FINISHED":
            raise ResumeError(f"--run-id {run_id}: that run finished; there is nothing to resume")
        candidates = [run]
    else:  # no interrupted run of this configuration: was there one of an edited configuration?
        recent = client.search_runs([exp_id], order_by=["attributes.start_time DESC"], max_results=50)
        candidates = [r for r in recent if r.info.status in ("FAILED", "KILLED")][:1]
    for run in candidates:
        if run.data.tags.get("stance.config_digest", digest) != digest:
            now = {k: v[:500] for k, v in params.items() if k != "run_name"}
            changed = [
                f"{k}: {run.data.params.get(k, '(unset)')} -> {v}" for k, v in now.items() if run.data.params.get(k, v) != v
            ]
            raise ResumeError(
                f"--resume: the configuration changed since run {run.info.run_id} was interrupted "
                f"({'; '.join(changed) or 'config digest differs'}); resume with the original settings, "
                f"or train anew without --resume"
            )


def find_resumable_run(exp_id: str, digest: str, has_checkpoint) -> str | None:
    """The newest FAILED / KILLED run of this configuration whose checkpoint folder still holds a checkpoint."""
    from mlflow.tracking import MlflowClient

    runs = MlflowClient().search_runs(
        [exp_id],
        filter_string=f"tags.`stance.config_digest` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for r in runs:
        if r.info.status in ("FAILED", "KILLED") and has_checkpoint(r.data.tags.get("stance.output_dir", "/nonexistent")):
            return r.info.run_id
    return None


# -- what the pipeline logs into the active run ---------------------------------------------------------------------


def start_run(
    experiment_id: str | None = None, run_name: str | None = None, run_id: str | None = None, parent_run_id: str | None = None
):
    """Open a run (or reopen run_id); a run with a parent is nested under it. Returns its id."""
    import mlflow

    run = mlflow.start_run(
        run_id=run_id,
        experiment_id=None if run_id else experiment_id,
        run_name=None if run_id else run_name,
        parent_run_id=parent_run_id,
        nested=parent_run_id is not None,
    )
    return run.info.run_id


def active_run_id() -> str | None:
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run else None


def log_metrics(metrics: dict[str, float], step: int | None = None) -> None:
    import mlflow

    mlflow.log_metrics(metrics, step=step)


def log_metric(name: str, value: float) -> None:
    import mlflow

    mlflow.log_metric(name, value)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    mlflow.set_tags(tags)


def log_params(params: dict) -> None:
    """Params as strings of at most 500 characters (MLflow's limit)."""
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})


def log_dict(obj: dict, path: str) -> None:
    import mlflow

    mlflow.log_dict(obj, path)


def log_text(text: str, path: str) -> None:
    import mlflow

    mlflow.log_text(text, path)


def log_table(frame, path: str) -> None:
    import mlflow

    mlflow.log_table(frame, path)


def register_model(run_id: str, name: str) -> str:
    """Register the run's logged model under `name`; returns the new version."""
    import mlflow

    return str(mlflow.register_model(f"runs:/{run_id}/model", name).version)
