"""Issue 12, run faults: concurrent store creation (item 10), SIGTERM and reused pids (item 11), the store found from a
subdirectory (item 12), resuming past a partial checkpoint (item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "STANCE_MLRUNS")}
    env.update(PYTHONPATH=str(REPO), MLFLOW_ENABLE_ASYNC_LOGGING="false", **extra)
    return env


# -- item 10: two commands on a store that does not exist yet ----------------------------------------------------------

RACE = """
import sys, time
from train import tracking
import mlflow
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))  # start together, after the slow imports
tracking.setup_tracking()
exp = tracking.get_experiment_id("race")
with mlflow.start_run(experiment_id=exp):
    mlflow.log_metric("x", 1.0)
print("ok")
"""


@pytest.mark.slow  # several stance processes
def test_concurrent_commands_on_a_fresh_store(tmp_path):
    store = tmp_path / "mlruns"
    start = time.time() + 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(start)],
            cwd=tmp_path,
            env=_env(STANCE_MLRUNS=str(store)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err[-3000:]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    assert len(client.search_runs([client.get_experiment_by_name("race").experiment_id])) == 3


# -- item 12: the store does not depend on the working directory ------------------------------------------------------


def test_store_found_from_a_subdirectory_and_named_when_a_run_is_missing(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from train import tracking
    from train.cli import app

    project = tmp_path / "proj"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "stance-lab"\n')
    for var in ("STANCE_MLRUNS", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert tracking.store_dir() == project / "mlruns"

    r = CliRunner().invoke(app, ["runs", "report", "0" * 32])
    assert r.exit_code == 1
    assert str(project / "mlruns" / "mlflow.db") in r.output and "stance-lab project" in r.output
    r = CliRunner().invoke(app, ["predict", "-m", f"runs:/{'0' * 32}/model", "-i", "in.csv", "-o", "out.csv"])
    assert r.exit_code != 0 and str(project / "mlruns" / "mlflow.db") in r.output, r.output
    assert not (project / "notebooks" / "deep" / "mlruns").exists() and not (project / "notebooks" / "mlruns").exists()

    # the overrides still come first
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # setup_tracking exported the project store's URI
    monkeypatch.setenv("STANCE_MLRUNS", str(tmp_path / "elsewhere"))
    assert tracking.store_dir() == tmp_path / "elsewhere" and "$STANCE_MLRUNS" in tracking.describe_store()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking.describe_store().startswith("http://tracking.example:5000 (from $MLFLOW_TRACKING_URI)")


def test_outside_a_project_the_nearest_existing_store_is_used(tmp_path, monkeypatch):
    from train import tracking

    (tmp_path / "mlruns").mkdir()
    (tmp_path / "mlruns" / "mlflow.db").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    monkeypatch.delenv("STANCE_MLRUNS", raising=False)
    monkeypatch.chdir(tmp_path / "sub")
    assert tracking.store_dir() == tmp_path / "mlruns"


# -- item 11: SIGTERM on `stance predict --log-mlflow`; a RUNNING run whose pid was reused ------------------------------

SLOW_PREDICT = """
import sys, time
import train.cli.predict as cp
from train.cli import app

def slow(*a, **k):
    print("predicting", flush=True)
    time.sleep(600)

cp._predict_local = slow
app(["predict", "-m", "some-model", "-i", "in.csv", "-o", "out.csv", "--log-mlflow"])
"""


@pytest.mark.slow  # several stance processes
def test_sigterm_on_predict_ends_its_mlflow_run_killed(tmp_path):
    import signal

    from mlflow.tracking import MlflowClient

    (tmp_path / "in.csv").write_text("text\nhello\n")
    store = tmp_path / "mlruns"
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_PREDICT],
        cwd=tmp_path,
        env=_env(STANCE_MLRUNS=str(store)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "predicting", proc.stderr.read()[-3000:]
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("stance-inference").experiment_id])
    assert run.info.status == "KILLED" and "signal 15" in run.data.tags["stance.error"]
    assert run.data.tags["stance.pid"] == str(proc.pid) and run.data.tags["stance.pid_start"]


def test_running_run_of_a_reused_pid_is_reconciled(mlflow_store):
    import socket

    import mlflow
    from mlflow.tracking import MlflowClient

    from train import tracking

    tracking.setup_tracking()
    exp = tracking.get_experiment_id("test-exp")
    # a live python process holds the pid now; the run's owner had the same pid but started at another time
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        start = tracking.runs._pid_start(other.pid)
        ids = {}
        for name, pid_start in (("reused", str(int(start) - 100)), ("owner-alive", start)):
            with mlflow.start_run(experiment_id=exp, run_name=name) as run:
                mlflow.set_tags(
                    {"stance.pid": str(other.pid), "stance.host": socket.gethostname(), "stance.pid_start": pid_start}
                )
            MlflowClient().set_terminated(run.info.run_id, status="RUNNING")  # as a SIGKILLed owner would leave it
            ids[name] = run.info.run_id
        assert tracking.reconcile_stale_runs(exp) == [ids["reused"]]
        assert MlflowClient().get_run(ids["reused"]).info.status == "FAILED"
        assert MlflowClient().get_run(ids["owner-alive"]).info.status == "RUNNING"
    finally:
        other.kill()
        other.wait()


def test_training_runs_record_the_process_start_time():
    from train import tracking

    tags = tracking.process_tags()
    assert tags["stance.pid"] == str(os.getpid()) and tags["stance.pid_start"] == tracking.runs._pid_start(os.getpid()) != ""


# -- item 9: a partial checkpoint beside a good one ----------------------------------------------------------------


@pytest.mark.slow  # an interrupted run, then its resumption
def test_resume_skips_a_partial_checkpoint(tiny_corpus, tiny_model_dir, mlflow_store, monkeypatch, capsys):
    import shutil

    import pytest

    import train.models.trainer as training
    from tests.conftest import tiny_overrides, tracking_client
    from tests.test_training import interrupt_after_first_epoch
    from train.config import load_config
    from train.pipeline import run_training

    armed = interrupt_after_first_epoch(monkeypatch)
    cfg = load_config(
        None, tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.epochs": 3, "train.early_stopping_patience": 0})
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, quiet=True)
    client = tracking_client()
    (run,) = client.search_runs([client.get_experiment_by_name("test-exp").experiment_id])
    out = Path(run.data.tags["stance.output_dir"])
    (good,) = out.glob("checkpoint-*")
    # SIGKILL while the Trainer saved the next checkpoint: weights written, optimizer half written, no trainer_state.json
    partial = out / f"checkpoint-{2 * int(good.name.split('-')[1])}"
    partial.mkdir()
    for name in ("model.safetensors", "config.json"):
        if (good / name).exists():
            shutil.copy(good / name, partial / name)
    (partial / "optimizer.pt").write_bytes((good / "optimizer.pt").read_bytes()[:100])
    assert training._complete_checkpoints(out) == [good]

    armed["on"] = False
    capsys.readouterr()
    rid = run_training(cfg, resume=True, quiet=True)
    err = capsys.readouterr().err
    assert rid == run.info.run_id and client.get_run(rid).info.status == "FINISHED"
    assert f"continuing from {good}" in err and f"{partial} is incomplete" in err
    assert [h.step for h in client.get_metric_history(rid, "train_loss")] == [1, 2, 3]  # epoch 1 was not trained again
    assert f"moved aside to incomplete-{partial.name}-" in err
    assert not out.exists()  # a finished run leaves no checkpoints behind, the moved-aside one included


def test_only_complete_checkpoints_count(tmp_path):
    from train.models import trainer as training

    def ckpt(name, files):
        d = tmp_path / name
        d.mkdir()
        for f in files:
            (d / f).write_text("{}" if f.endswith(".json") else "x")
        return d

    full = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pth", "model.safetensors")
    a, b = ckpt("checkpoint-10", full), ckpt("checkpoint-9", full)
    ckpt("checkpoint-20", full[1:])  # no trainer_state.json
    ckpt("checkpoint-30", full[:-1])  # no weights
    bad = ckpt("checkpoint-40", full)
    (bad / "trainer_state.json").write_text('{"global_step": ')  # cut off mid-write
    assert training._complete_checkpoints(tmp_path) == [b, a] and training.has_checkpoint(tmp_path)
    assert training._resume_checkpoint(tmp_path) == str(a)
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.glob("incomplete-*")) == [
        "incomplete-checkpoint-20",
        "incomplete-checkpoint-30",
        "incomplete-checkpoint-40",
    ]
    assert (
        not training.has_checkpoint(tmp_path / "nothing-here") and training._resume_checkpoint(tmp_path / "nothing-here") is None
    )


def test_two_workers_logging_the_same_dataset_at_once_both_link_it(tmp_path, monkeypatch):
    """The race two `stance tune` workers hit: both look the dataset up, find none, both insert; the loser gets the
    unique-key error. log_dataset links the row the winner inserted instead of failing the trial."""
    import mlflow
    import mlflow.store.tracking.sqlalchemy_store as st
    import pandas as pd

    from train.tracking.artifacts import log_dataset

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'm.db'}")
    mlflow.set_experiment("race")  # not the active experiment an earlier test left behind (an id this store lacks)
    real, calls = st.SqlAlchemyStore._log_inputs_impl, []

    def racy(self, experiment_id, run_id, datasets, models=None):
        calls.append(run_id)
        if len(calls) == 1:  # the other worker inserts the same dataset first
            with mlflow.start_run(nested=True):
                real(self, experiment_id, mlflow.active_run().info.run_id, datasets, models)
            raise mlflow.exceptions.MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, datasets.digest"
            )
        return real(self, experiment_id, run_id, datasets, models)

    monkeypatch.setattr(st.SqlAlchemyStore, "_log_inputs_impl", racy)
    df = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "stance": ["neutral", "hostile"]})
    with mlflow.start_run() as run:
        log_dataset(df, "train", str(tmp_path))
    (linked,) = mlflow.get_run(run.info.run_id).inputs.dataset_inputs
    assert linked.dataset.name == "labeled-train" and len(calls) == 2

    def broken(self, *a, **k):
        raise mlflow.exceptions.MlflowException("disk I/O error")

    monkeypatch.setattr(st.SqlAlchemyStore, "_log_inputs_impl", broken)
    try:
        with mlflow.start_run(), pytest.raises(mlflow.exceptions.MlflowException, match="disk I/O"):
            log_dataset(df, "val", str(tmp_path))  # any other error still fails loudly
    finally:
        mlflow.set_tracking_uri(previous)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temp_file(tmp_path):
    """train.formats.write_atomic, under every table, plot and export writer: all or nothing, nothing left behind."""
    from train.formats import write_atomic, write_rows_atomic

    target = write_rows_atomic(tmp_path / "out.csv", [{"id": "1", "stance": None, "extra": "x"}], ["id", "stance"])
    assert target.read_text(encoding="utf-8") == "id,stance\n1,\n"  # only the columns asked for; None as an empty cell

    def half_then_fail(tmp):
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("id,stance\n2,hos")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text(encoding="utf-8") == "id,stance\n1,\n" and sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
    jsonl = write_rows_atomic(tmp_path / "out.jsonl", [{"id": "1", "text": "é"}], ["id", "text"])
    assert jsonl.read_text(encoding="utf-8") == '{"id": "1", "text": "é"}\n'
