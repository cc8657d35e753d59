"""`stance tune`: an Optuna search whose trials are nested MLflow runs under one parent, pruning (KILLED trials),
several workers on one sqlite study, and config errors that stop before (or right after the first trial of) a search."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, tiny_overrides, tracking_client
from train.config import ConfigError, load_config

LR_SPACE = "tune.space={train.lr: {type: float, low: 1.0e-4, high: 3.0e-2, log: true}, model.dropout: {type: categorical, choices: [0.0, 0.2, 0.4]}}"
C_SPACE = "tune.space={model.C: {type: float, low: 0.01, high: 100.0, log: true}}"


def children_of(client, parent_id: str, experiment="test-exp"):
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs(
        [exp.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", order_by=["attributes.start_time ASC"]
    )


def load_study(result_or_storage, name=None):
    import optuna

    if name is None:
        return optuna.load_study(study_name=result_or_storage.study_name, storage=result_or_storage.storage)
    return optuna.load_study(study_name=name, storage=result_or_storage)


@pytest.mark.slow  # a search: several runs
def test_search_logs_nested_trials_and_the_best(tiny_corpus, tiny_model_dir, mlflow_store, capsys):
    from train.tune import run_tune

    cfg = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.epochs": 1})
        + [LR_SPACE, "tune.pruner=none", "tune.seed=3", "tune.max_train_rows=40"],
    )
    started = time.time()
    result = run_tune(cfg, config_path="configs/x.yaml", overrides=["train.threads=1"], trials=3)
    print(f"3-trial search: {time.time() - started:.1f}s", file=sys.stderr)
    out = capsys.readouterr().out

    client = tracking_client()
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["stance.tune"] == "true"
    # left out of `stance runs compare` (like a seed sweep's parent) and of the transfer/UMSAB tables (no eval_split)
    assert parent.data.tags["stance.parent"] == "true" and "eval_split" not in parent.data.tags
    kids = children_of(client, result.parent_run_id)
    assert len(kids) == 3 and all(k.info.status == "FINISHED" for k in kids)

    study = load_study(result)
    trials = {t.number: t for t in study.trials}
    assert sorted(trials) == [0, 1, 2] and all(t.state.name == "COMPLETE" for t in trials.values())
    for kid in kids:
        t = trials[int(kid.data.tags["stance.trial"])]
        assert t.user_attrs["mlflow_run_id"] == kid.info.run_id
        # the run trained with the trial's values, on the subsample, and registered nothing
        assert float(kid.data.params["train.lr"]) == pytest.approx(t.params["train.lr"], rel=1e-12)
        assert float(kid.data.params["model.dropout"]) == t.params["model.dropout"]
        assert kid.data.params["n_train"] == "40" and kid.data.params["data.max_train_rows"] == "40"
        assert kid.data.params["register_as"] == "None" and "stance.registered_version" not in kid.data.tags
        assert kid.data.metrics["val_macro_f1"] == pytest.approx(t.value)
    lrs = {kid.data.params["train.lr"] for kid in kids}
    assert len(lrs) == 3, lrs

    best_value = max(k.data.metrics["val_macro_f1"] for k in kids)
    assert parent.data.metrics["best_value"] == pytest.approx(best_value) == pytest.approx(result.best_value)
    assert parent.data.metrics["tune.n_complete"] == 3
    best = study.best_trial
    assert parent.data.params["best.train.lr"] == str(best.params["train.lr"])
    assert parent.data.tags["stance.best_run"] == best.user_attrs["mlflow_run_id"]
    assert not client.search_registered_models()

    artifacts = {a.path for a in client.list_artifacts(result.parent_run_id, "tune")}
    assert {"tune/trials.json", "tune/trials.txt"} <= artifacts
    # printed: the table (a row per trial) and the best trial as a command, on all rows (no max_train_rows)
    assert all(f"\n{n} " in "\n" + result.table for n in (0, 1, 2))
    assert result.command.startswith("stance train configs/x.yaml train.threads=1 ")
    assert f"train.lr={best.params['train.lr']!r}" in result.command and "max_train_rows" not in result.command
    assert result.command in out and "COMPLETE" in out


class AlwaysPrune:
    """Prunes every trial at its first report (epoch 1): pruning without depending on other trials' values."""

    def __new__(cls):
        import optuna

        class _Always(optuna.pruners.BasePruner):
            def prune(self, study, trial):
                return True

        return _Always()


@pytest.mark.slow  # a search: several runs
def test_a_pruned_trial_ends_killed_and_tagged(tiny_corpus, tiny_model_dir, mlflow_store, monkeypatch):
    from train import tune

    monkeypatch.setattr(tune, "make_pruner", lambda cfg: AlwaysPrune())
    cfg = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.epochs": 3, "train.early_stopping_patience": 0})
        + [LR_SPACE, "tune.seed=1"],
    )
    result = tune.run_tune(cfg, trials=2, quiet=True)

    client = tracking_client()
    kids = children_of(client, result.parent_run_id)
    assert len(kids) == 2
    for kid in kids:
        assert kid.info.status == "KILLED", kid.data.tags.get("stance.error")
        assert kid.data.tags["stance.pruned"] == "true"
        assert "pruned after epoch 1" in kid.data.tags["stance.error"]
        history = client.get_metric_history(kid.info.run_id, "val_macro_f1")
        assert [m.step for m in history] == [1]  # stopped after the first of three epochs
        assert not Path(kid.data.tags["stance.output_dir"]).exists()  # its checkpoints removed
    study = load_study(result)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(list(t.intermediate_values) == [1] for t in study.trials)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.metrics["tune.n_pruned"] == 2
    assert "best_value" not in parent.data.metrics and result.best_value is None and result.command == ""


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "STANCE_MLRUNS")}
    env.update(PYTHONPATH=str(REPO), MLFLOW_ENABLE_ASYNC_LOGGING="false", **extra)
    return env


@pytest.mark.slow  # several stance tune processes
def test_two_workers_share_one_sqlite_study(tiny_corpus, tmp_path):
    """Two `stance tune` processes, started together on a fresh sqlite storage, run 2 + 1 trials of one study."""
    store, db = tmp_path / "mlruns", tmp_path / "optuna" / "study.db"
    cfg = tmp_path / "search.yaml"
    cfg.write_text(
        f"experiment: test-exp\nregister_as: test-model\ndata:\n  paths: [{tiny_corpus}]\nmodel:\n  kind: baseline\n"
        f"tune:\n  trials: 5\n  objective: macro_f1\n  space:\n    model.C: {{type: float, low: 0.01, high: 100.0, log: true}}\n"
        f"    model.ngram_max: {{type: int, low: 3, high: 5}}\n",
        encoding="utf-8",
    )
    args = [sys.executable, "-m", "train.cli", "tune", str(cfg), "--storage", f"sqlite:///{db}", "--study", "shared"]
    started = time.time()
    procs = [
        subprocess.Popen(
            [*args, "--trials", str(n)],
            cwd=tmp_path,
            env=_env(STANCE_MLRUNS=str(store)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in (2, 1)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    print(f"two workers: {time.time() - started:.1f}s", file=sys.stderr)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "stance train " in out and "model.C=" in out

    study = load_study(f"sqlite:///{db}", "shared")
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    exp = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("stance.tune") == "true"]
    kids = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and all(r.info.status == "FINISHED" for r in runs)
    assert sorted(len([k for k in kids if k.data.tags["mlflow.parentRunId"] == p.info.run_id]) for p in parents) == [1, 2]
    assert sorted(int(k.data.tags["stance.trial"]) for k in kids) == [0, 1, 2]
    assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == {k.info.run_id for k in kids}


def test_a_bad_tune_key_fails_before_anything_runs(tiny_corpus, store_location):
    from train.cli import app

    base = tiny_overrides(tiny_corpus, "unused", **{"model.kind": "baseline"})
    result = CliRunner().invoke(app, ["tune", str(REPO / "configs/default.yaml"), *base, C_SPACE, "tune.trails=3"])
    assert result.exit_code == 2 and "Did you mean 'tune.trials'?" in result.output
    result = CliRunner().invoke(
        app, ["tune", str(REPO / "configs/default.yaml"), *base, "tune.space={model.CC: {type: float, low: 0.1, high: 1.0}}"]
    )
    assert result.exit_code == 2 and "Did you mean 'model.C'?" in result.output
    with pytest.raises(ConfigError, match=r"tune.space.train.lr.lo' for type float. Did you mean 'tune.space.train.lr.low'"):
        load_config(None, ["tune.space={train.lr: {type: float, lo: 1.0e-5, high: 1.0e-4}}"])
    with pytest.raises(ConfigError, match=r"the value -1.0 is not valid for train.lr"):
        load_config(None, ["tune.space={train.lr: {type: float, low: -1, high: 1.0e-4}}"])
    # an evaluation set the config does not have: refused before the study or any run exists
    result = CliRunner().invoke(
        app, ["tune", str(REPO / "configs/default.yaml"), *base, C_SPACE, "tune.objective=realquotes_dev/macro_f1"]
    )
    assert result.exit_code == 2 and "data.eval_files does not have" in result.output
    assert not (store_location / "mlflow.db").exists() and not (store_location / "optuna.db").exists()


def test_an_objective_no_run_logs_stops_after_the_first_trial(tiny_corpus, mlflow_store):
    from train.cli import app

    base = tiny_overrides(tiny_corpus, "unused", **{"model.kind": "baseline"})
    result = CliRunner().invoke(
        app, ["tune", str(REPO / "configs/default.yaml"), *base, C_SPACE, "tune.objective=val_macro_f2", "--trials", "4"]
    )
    assert result.exit_code == 2, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("error:")]
    assert len(lines) == 1 and "logged no metric 'val_macro_f2'" in lines[0] and "val_macro_f1" in lines[0]
    client = tracking_client()
    exp = client.get_experiment_by_name("test-exp")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags.get("stance.tune") == "true")
    assert parent.info.status == "FAILED" and parent.data.tags["stance.error"].startswith("trial 0 failed: ObjectiveMissing")
    assert len(children_of(client, parent.info.run_id)) == 1  # not four: the search stopped after its first trial


def test_subsample_is_stratified_and_deterministic():
    import pandas as pd

    from tests.conftest import make_rows
    from train.data import subsample

    df = pd.DataFrame(make_rows())  # 3 languages x 3 labels x 12 rows
    a, b = subsample(df, 27, seed=5), subsample(df, 27, seed=5)
    assert len(a) == 27 and a.index.equals(b.index) and not a.index.equals(subsample(df, 27, seed=6).index)
    assert a.groupby(["stance", "language"]).size().tolist() == [3] * 9
    assert a.index.is_monotonic_increasing


HAMMER = """
import sys, time
import optuna
from train.config import load_config
from train.tune import open_study
optuna.logging.set_verbosity(optuna.logging.WARNING)
cfg = load_config(None, ["tune.pruner=none"])
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # start together, after the imports
study = open_study(cfg, sys.argv[1], "hammer")
def objective(trial):
    x = trial.suggest_float("x", -1.0, 1.0)
    for step in range(3):
        trial.report(x * step, step)
    return x * x
study.optimize(objective, n_trials=15)
print("ok")
"""


@pytest.mark.slow  # several processes on one storage
def test_many_workers_on_a_fresh_sqlite_storage_do_not_crash(tmp_path):
    """Four processes create one sqlite study at the same moment and write trials as fast as they can, while another
    process holds the database's write lock for 8 s (longer than sqlite's default 5 s wait) just as they start."""
    import sqlite3

    path = tmp_path / "fresh" / "optuna.db"
    url = f"sqlite:///{path}"
    start = time.time() + 8
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", HAMMER, url, str(start)],
            cwd=tmp_path,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    path.parent.mkdir()
    time.sleep(max(0.0, start - 0.5 - time.time()))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    time.sleep(8)
    holder.execute("COMMIT")
    holder.close()
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.strip() == "ok", err[-3000:]
    study = load_study(url, "hammer")
    assert len(study.trials) == 60 and sorted(t.number for t in study.trials) == list(range(60))
    assert all(t.state.name == "COMPLETE" and len(t.intermediate_values) == 3 for t in study.trials)


def test_a_time_budget_stops_starting_trials(tiny_corpus, mlflow_store):
    """tune.timeout_minutes: the worker starts no trial after the budget (the running one finishes), far fewer than asked."""
    from train.cli import app

    base = tiny_overrides(tiny_corpus, "unused", **{"model.kind": "baseline"})
    started = time.time()
    result = CliRunner().invoke(
        app, ["tune", str(REPO / "configs/default.yaml"), *base, C_SPACE, "tune.timeout_minutes=0.02", "--trials", "50"]
    )
    assert result.exit_code == 0, result.output
    client = tracking_client()
    exp = client.get_experiment_by_name("test-exp")
    parent = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("stance.tune") == "true")
    n = len(children_of(client, parent.info.run_id))
    assert 1 <= n < 50 and parent.data.params["tune.timeout_minutes"] == "0.02"
    # every trial but the last started within the budget; a 50-trial search of baselines takes minutes
    assert time.time() - started < 60
    with pytest.raises(ConfigError, match=r"tune.timeout_minutes: 0.0 is out of range; valid: a number of minutes > 0"):
        load_config(None, ["tune.timeout_minutes=0"])


def test_settings_without_effect_are_announced_once_per_search(tiny_corpus, mlflow_store, capsys):
    """A baseline search with a transformer-only setting: one warning for the search (not one per trial), and every
    trial still records it in its own run."""
    from train.tune import run_tune

    cfg = load_config(
        REPO / "configs/default.yaml",
        [*tiny_overrides(tiny_corpus, "unused", **{"model.kind": "baseline"}), C_SPACE, "train.lr=0.003"],
    )
    result = run_tune(cfg, trials=3, quiet=True)
    err = capsys.readouterr().err
    assert err.count("no effect on a baseline run") == 1 and "train.lr" in err, err
    trials = children_of(tracking_client(), result.parent_run_id)
    assert len(trials) == 3
    assert all("train.lr" in t.data.tags["stance.ignored_settings"] for t in trials)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_trial_whose_worker_died_is_failed_by_the_next_worker(tiny_corpus, mlflow_store, monkeypatch):
    """A worker killed outright (SIGKILL) leaves its trial RUNNING; once its heartbeat is older than the grace period,
    the next worker's search marks it FAIL instead of leaving it running forever."""
    import optuna

    from train import tune

    monkeypatch.setattr(tune, "GRACE_S", 1)
    cfg = load_config(
        REPO / "configs/default.yaml", [*tiny_overrides(tiny_corpus, "unused", **{"model.kind": "baseline"}), C_SPACE]
    )
    storage_url = tune.default_storage()
    name = tune.default_study_name(cfg, None)
    study = tune.open_study(cfg, storage_url, name)
    dead = study.ask()  # what a worker does when it starts a trial ...
    study._storage.record_heartbeat(dead._trial_id)  # ... and its first beat; then it is killed
    time.sleep(2.5)
    tune.run_tune(cfg, trials=1, quiet=True)
    states = {t.number: t.state for t in load_study(storage_url, name).trials}
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    assert list(states.values()).count(optuna.trial.TrialState.COMPLETE) == 1
