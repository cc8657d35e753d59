"""MLflow plumbing: where runs go, lineage, evaluation artifacts, and logging/registering the model as a pyfunc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from train.schema import LABELS

STORE_DIR_ENV = "STANCE_MLRUNS"  # overrides the local store folder (tests use a temp one)
PYFUNC_FILE = Path(__file__).with_name("pyfunc.py")
PYFUNC_REQUIREMENTS = ["torch", "transformers", "tokenizers", "safetensors", "scikit-learn", "skops", "numpy", "pandas", "mlflow"]


def store_dir() -> Path:
    """The local store's folder; the one place that decides it (see _locate_store for the order)."""
    return _locate_store()[0]


def _locate_store() -> tuple[Path, str]:
    """(store folder, why that one). $STANCE_MLRUNS first; else the mlruns/ of the stance-lab checkout the working
    directory lies in, so that a command started in a subdirectory (notebooks/, scripts/) finds the project's runs
    instead of creating an empty store there; else the nearest existing mlruns/mlflow.db above; else ./mlruns."""
    if os.environ.get(STORE_DIR_ENV):
        return Path(os.environ[STORE_DIR_ENV]).resolve(), f"${STORE_DIR_ENV}"
    cwd = Path.cwd().resolve()
    for d in (cwd, *cwd.parents):
        if _is_project_root(d):
            return d / "mlruns", f"the stance-lab project at {d}" + ("" if d == cwd else f", above the working directory {cwd}")
    for d in (cwd, *cwd.parents):
        if (d / "mlruns" / "mlflow.db").is_file():
            return d / "mlruns", f"the nearest existing store above the working directory {cwd}"
    return cwd / "mlruns", f"no stance-lab project or store above the working directory {cwd}: a new store there"


def _is_project_root(d: Path) -> bool:
    import tomllib

    try:
        return tomllib.loads((d / "pyproject.toml").read_text(encoding="utf-8")).get("project", {}).get("name") == "stance-lab"
    except (OSError, ValueError, UnicodeDecodeError):
        return False


def describe_store() -> str:
    """Which store commands use and why, for messages such as "run not found"."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri and uri != _local_uri():
        return f"{uri} (from $MLFLOW_TRACKING_URI)"
    path, why = _locate_store()
    return f"{path / 'mlflow.db'} ({why})"


def setup_tracking() -> str:
    """Use MLFLOW_TRACKING_URI when set (a team server); otherwise an embedded sqlite store under mlruns/.

    Set explicitly because MLflow's own default depends on what happens to be in the working directory.
    """
    import mlflow

    global _LOCAL_STORE
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    _LOCAL_STORE = not uri or uri == _local_uri()
    if _LOCAL_STORE:
        uri = _local_uri()
        _create_store_once(uri)
    mlflow.set_tracking_uri(uri)  # note: this also exports MLFLOW_TRACKING_URI to the environment
    # The registry follows the tracking URI by default; setting it here would export MLFLOW_REGISTRY_URI and pin it.
    return uri


_LOCAL_STORE = False
_CREATED: set[str] = set()


def _create_store_once(uri: str) -> None:
    """Create and migrate the sqlite store while holding a lock file in its folder. MLflow migrates a store that lacks
    tables on first use, unlocked: two commands started at once on a fresh store both run the migrations on one
    database, and one crashes. Under the lock the second one finds the tables there and only checks them."""
    import fcntl

    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    if uri in _CREATED:
        return
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".create.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        SqlAlchemyStore(uri, (folder / "artifacts").as_uri()).engine.dispose()
    _CREATED.add(uri)


def _local_uri() -> str:
    return f"sqlite:///{store_dir() / 'mlflow.db'}"


def is_local_store() -> bool:
    """True when setup_tracking chose the embedded store (decided before mlflow exported the URI to the env)."""
    return _LOCAL_STORE


def get_experiment_id(name: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    from mlflow.exceptions import MlflowException

    location = (store_dir() / "artifacts").as_uri() if is_local_store() else None
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except MlflowException:  # another command created it since we looked (two runs started at once)
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


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
            mlflow.set_tags({"stance.error": f"{error_prefix()}{type(e).__name__}: {e}"[:5000], **(getattr(e, "run_tags", None) or {})})
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
    return {"git.commit": commit or "unknown", "git.dirty": str(bool(dirty)).lower() if commit else "unknown"}


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


def log_dataset(df, context: str, source: str) -> None:
    """The exact rows used, as an MLflow dataset input with its digest (data lineage)."""
    import mlflow

    cols = [c for c in ("id", "text", "language", "stance", "speaker_group", "source", "split") if c in df.columns]
    ds = mlflow.data.from_pandas(df[cols].reset_index(drop=True), source=source, name=f"labeled-{context}", targets="stance")
    mlflow.log_input(ds, context=context)


def log_evaluation(eval_df, proba: np.ndarray, metrics: dict, prefix: str = "eval") -> None:
    """Artifacts that render in the MLflow UI: confusion matrix, per-language bars, reliability diagram, report, tables."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import ConfusionMatrixDisplay, classification_report

    from train.metrics import reliability_bins

    y_true = eval_df["stance"].map(LABELS.index).to_numpy()
    y_pred = proba.argmax(1)
    report = classification_report(y_true, y_pred, labels=list(range(len(LABELS))), target_names=list(LABELS), digits=3, zero_division=0)
    mlflow.log_text(report, f"{prefix}/classification_report.txt")

    fig, ax = plt.subplots(figsize=(4.6, 4))
    ConfusionMatrixDisplay.from_predictions(y_true, y_pred, labels=list(range(len(LABELS))), display_labels=list(LABELS), ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(f"{prefix}: confusion matrix")
    fig.tight_layout()
    mlflow.log_figure(fig, f"{prefix}/confusion_matrix.png")
    plt.close(fig)

    langs = sorted(k.removeprefix("macro_f1_lang_") for k in metrics if k.startswith("macro_f1_lang_"))
    if langs:
        fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(langs) + 2), 3.2))
        vals = [metrics[f"macro_f1_lang_{l}"] for l in langs]
        ax.bar(langs, vals, color="#4c72b0")
        ax.axhline(metrics["macro_f1"], color="k", ls="--", lw=1, label=f"all: {metrics['macro_f1']:.3f}")
        ax.set_ylim(0, 1)
        ax.set_ylabel("macro-F1")
        ax.set_title(f"{prefix}: macro-F1 per language")
        ax.legend(loc="lower right")
        fig.tight_layout()
        mlflow.log_figure(fig, f"{prefix}/per_language_macro_f1.png")
        plt.close(fig)

    bins = reliability_bins(y_true, proba)  # the same bins the logged ECE is computed from
    centers, accs = [b[0] for b in bins], [b[1] for b in bins]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(centers, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {metrics.get('ece', float('nan')):.3f})")
    fig.tight_layout()
    mlflow.log_figure(fig, f"{prefix}/reliability_diagram.png")
    plt.close(fig)

    log_scored_rows(eval_df, proba, prefix)
    table = predictions_table(eval_df, proba)
    mlflow.log_table(table, f"{prefix}/predictions.json")
    wrong = table[table["gold"] != table["predicted"]].sort_values("confidence", ascending=False)
    mlflow.log_table(wrong, f"{prefix}/misclassified.json")


SCORED_FILE = "scored.parquet"


def log_scored_rows(eval_df, proba: np.ndarray, prefix: str = "eval") -> None:
    """The evaluation rows with the exact probabilities the run computed (float32, not rounded): what
    `stance runs verify` re-scores the logged model on and compares against, even after labeled/ has changed."""
    import mlflow

    cols = [c for c in ("id", "text", "language", "speaker_group", "stance") if c in eval_df.columns]
    table = eval_df[cols].reset_index(drop=True).copy()
    for i, name in enumerate(LABELS):
        table[f"prob_{name}"] = np.asarray(proba, dtype=np.float32)[:, i]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / SCORED_FILE
        table.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), prefix)


def predictions_table(eval_df, proba: np.ndarray):
    import pandas as pd

    table = pd.DataFrame({
        "id": eval_df["id"].to_numpy(),
        "text": eval_df["text"].to_numpy(),
        "language": eval_df["language"].to_numpy(),
        "speaker_group": eval_df["speaker_group"].to_numpy(),
        "gold": eval_df["stance"].to_numpy(),
        "predicted": [LABELS[i] for i in proba.argmax(1)],
        "confidence": proba.max(1).round(4),
    })
    for i, name in enumerate(LABELS):
        table[f"prob_{name}"] = proba[:, i].round(4)
    return table


def pinned_requirements() -> list[str]:
    """The pyfunc's requirements at the exact versions installed now, so the environment that produced a run's
    numbers is the one `mlflow models serve` or a Spark cluster rebuilds (unpinned names would take today's releases)."""
    from importlib.metadata import PackageNotFoundError, version

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
    from importlib.metadata import distributions

    names = {(d.metadata["Name"] or "").lower(): d.version for d in distributions() if d.metadata["Name"]}
    return "".join(f"{n}=={v}\n" for n, v in sorted(names.items()))


def log_stance_model(model_dir: Path, example_texts: list[str], register_as: str | None = None):
    """Log a saved model directory as an MLflow pyfunc ("models from code": nothing is pickled). Training registers
    it only after `stance runs verify` passed (training.verify_and_register)."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from train.pyfunc import output_frame

    example = pd.DataFrame({"text": example_texts[:3]})
    dummy = output_frame(np.full((len(example), len(LABELS)), 1 / len(LABELS), dtype=np.float32))
    signature = infer_signature(example, dummy)
    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_FILE),
        artifacts={"stance_model": str(model_dir)},
        code_paths=[str(Path(__file__).parent)],
        pip_requirements=pinned_requirements(),  # inference of requirements is slow and adds torchvision (stack notes)
        signature=signature,
        registered_model_name=register_as,
    )
    return info


def write_json(obj, name: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        mlflow.log_artifact(str(p))
