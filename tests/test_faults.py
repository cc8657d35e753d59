"""Issue 12, run faults: concurrent store creation (item 10), SIGTERM and reused pids (item 11), the store found from a
subdirectory (item 12), resuming past a partial checkpoint (item 9)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_concurrent_commands_on_a_fresh_store(tmp_path):
    store = tmp_path / "mlruns"
    start = time.time() + 8
    procs = [subprocess.Popen([sys.executable, "-c", RACE, str(start)], cwd=tmp_path, env=_env(STANCE_MLRUNS=str(store)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
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
