"""`stance tune`: an Optuna hyperparameter search described by the config's `tune:` section.

Each trial is one `run_training` call on the config with the trial's values applied, logged as a nested MLflow run
under one parent run per `stance tune` process. Workers (several processes, on one machine or several) pointed at
the same Optuna storage and study name share the study: each runs its own `trials`, Optuna hands out the trial numbers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import hashlib
import json
import re
import shutil
import sys
import warnings
from pathlib import Path

import optuna

from train import tracking
from train.config import Config, ConfigError, apply_overrides, ineffective_warning, to_dict
from train.data import prepare_data
from train.pipeline import parent_tags, run_training
from train.reports.trials import best_command, fmt_params, trials_frame, trials_table
from train.runtime import store_dir
from train.tracking import runs as run_log
from train.tracking.queries import run_metrics, run_tags

PARAM_TAG = "stance.trial_params"
SQLITE_TIMEOUT_S = 300  # a worker waits this long for another's write to the sqlite storage instead of failing
# Optuna's heartbeat: a running trial's worker writes one every HEARTBEAT_S; a trial whose worker stopped beating for
# GRACE_S (killed with SIGKILL, machine lost) is marked FAIL by the next worker that starts a trial, instead of staying
# RUNNING in the study forever.
HEARTBEAT_S = 60
GRACE_S = 300


class ObjectiveMissing(ConfigError):
    """The objective metric is not among what a trial's run logged: the search stops after its first trial."""


class Pruned(optuna.TrialPruned):
    """Raised from the Trainer when Optuna prunes the trial: its MLflow run ends KILLED, tagged stance.pruned."""

    run_status = "KILLED"
    run_tags = {"stance.pruned": "true"}


@dataclasses.dataclass
class TuneResult:
    parent_run_id: str
    study_name: str
    storage: str
    table: str  # the readable table of the study's trials
    command: str  # `stance train ...` with the best trial's values
    best_value: float | None
    best_params: dict


# -- settings ------------------------------------------------------------------------------------------------------


def default_storage() -> str:
    return f"sqlite:///{store_dir() / 'optuna.db'}"


def default_study_name(cfg: Config, config_path: str | None) -> str:
    """The config file's stem and a digest of everything that defines the search (base config, space, objective),
    not of how many trials this worker runs or where the study is stored: every worker derives the same name, and an
    edited search gets a new study instead of mixing into the old one."""
    d = to_dict(cfg)
    for key in ("trials", "storage", "study_name", "seed"):
        d["tune"].pop(key, None)
    for key in ("run_name", "output_dir"):
        d.pop(key, None)
    d["train"].pop("threads", None)  # workers on other machines may use other thread counts
    digest = hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:8]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(config_path).stem) if config_path else "tune"
    return f"{stem}-{digest}"


def prune_metric(cfg: Config) -> str:
    """The per-epoch metric the pruner watches: tune.prune_on, else val_<the objective's metric name>."""
    if cfg.tune.prune_on:
        return cfg.tune.prune_on
    name = cfg.tune.objective.rsplit("/", 1)[-1]
    return name if name.startswith("val_") else f"val_{name}"


def check_tune_config(cfg: Config) -> None:
    t = cfg.tune
    if not t.space:
        raise ConfigError(
            "tune.space is empty: name at least one key to search, e.g. "
            "tune.space: {train.lr: {type: float, low: 1.0e-5, high: 1.0e-4, log: true}}"
        )
    if "/" in t.objective:  # `<eval file stem>/<metric>`: the file must be one of data.eval_files
        stems = [re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(p).stem) for p in cfg.data.eval_files]
        prefix = t.objective.rsplit("/", 1)[0]
        if prefix not in stems:
            valid = ", ".join(f"{s}/<metric>" for s in stems) or "none: data.eval_files is empty"
            raise ConfigError(
                f"tune.objective: {t.objective!r} names the evaluation set {prefix!r}, which data.eval_files "
                f"does not have; valid: val_<metric>, <metric> (the eval split), {valid}"
            )


def sampler(cfg: Config):
    return optuna.samplers.TPESampler(seed=cfg.tune.seed)


def make_pruner(cfg: Config):
    if cfg.tune.pruner in (None, "none") or cfg.model.kind == "baseline":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=cfg.tune.pruner_startup_trials, n_warmup_steps=0)


# -- storage ---------------------------------------------------------------------------------------------------------


def open_storage(url: str):
    """Optuna's RDB storage. On sqlite, several worker processes share one file: the tables are created under a lock
    file (two workers starting on a fresh file would both create them, and one would crash), every transaction takes
    the write lock when it begins (BEGIN IMMEDIATE: a reader that later writes cannot deadlock with another writer, which
    sqlite answers with an immediate 'database is locked'), and a worker waits up to SQLITE_TIMEOUT_S for the lock."""
    from optuna.storages import RDBStorage

    beats = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning, message=".*heartbeat")
    if not url.startswith("sqlite:"):
        return RDBStorage(url, **beats)
    from sqlalchemy import event

    path = Path(url.split(":///", 1)[1]) if ":///" in url else None
    lock_ctx = contextlib.nullcontext()
    if path is not None and str(path) not in ("", ":memory:"):
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_ctx = open(path.with_name(path.name + ".lock"), "w")
    with lock_ctx as lock:
        if lock is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        storage = RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}}, **beats)
    engine = storage.engine

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below, not pysqlite, start transactions

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed would not use them
    return storage


def open_study(cfg: Config, storage_url: str, study_name: str):
    storage = open_storage(storage_url)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=cfg.tune.direction,
        sampler=sampler(cfg),
        pruner=make_pruner(cfg),
        load_if_exists=True,
    )
    if study.direction.name.lower() != cfg.tune.direction:
        raise ConfigError(
            f"study {study_name!r} in {storage_url} exists with direction {study.direction.name.lower()}, "
            f"not {cfg.tune.direction}; use another --study name"
        )
    return study


# -- one trial -------------------------------------------------------------------------------------------------------


def suggest(trial, space: dict) -> dict:
    values = {}
    for key, spec in space.items():
        kind = spec["type"]
        if kind == "categorical":
            values[key] = trial.suggest_categorical(key, spec["choices"])
        elif kind == "int":
            values[key] = trial.suggest_int(
                key, int(spec["low"]), int(spec["high"]), step=int(spec.get("step") or 1), log=bool(spec.get("log"))
            )
        else:
            values[key] = trial.suggest_float(
                key, float(spec["low"]), float(spec["high"]), step=spec.get("step"), log=bool(spec.get("log"))
            )
    return values


def pruning_callback(trial, metric: str):
    """A Trainer callback: after each epoch's validation, report `metric` to Optuna and stop the run if it says prune."""
    from transformers import TrainerCallback

    key = "eval_" + metric.removeprefix("val_")

    class OptunaPruning(TrainerCallback):
        run_id = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.run_id = run_log.active_run_id()

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            if not metrics or key not in metrics or state.epoch is None:
                return
            epoch = int(round(state.epoch))
            trial.report(float(metrics[key]), epoch)
            if trial.should_prune():
                raise Pruned(f"trial {trial.number} pruned after epoch {epoch}: {metric}={metrics[key]:.4f}")

    return OptunaPruning()


def trial_config(cfg: Config, values: dict, number: int) -> Config:
    out = apply_overrides(cfg, values)
    data = out.data
    if cfg.tune.max_train_rows is not None:
        data = dataclasses.replace(data, max_train_rows=cfg.tune.max_train_rows)
    name = f"{cfg.run_name}-t{number}" if cfg.run_name else None
    return dataclasses.replace(out, register_as=None, run_name=name, data=data)


def run_trial(trial, cfg: Config, parent_id: str, study_name: str, config_path: str | None, quiet: bool) -> float:
    values = suggest(trial, cfg.tune.space)
    child = trial_config(cfg, values, trial.number)
    tags = {"stance.trial": str(trial.number), "stance.study": study_name, PARAM_TAG: json.dumps(values, sort_keys=True)}
    tags.update({f"trial.{k}": str(v) for k, v in values.items()})
    callback = pruning_callback(trial, prune_metric(cfg)) if cfg.model.kind == "transformer" else None
    try:
        rid = run_training(
            child,
            config_path=config_path,
            parent_run_id=parent_id,
            quiet=True,
            callbacks=[callback] if callback else (),
            tags=tags,
            announce_ignored=False,  # run_tune printed it once
        )
    except optuna.TrialPruned:
        if callback is not None and callback.run_id:
            trial.set_user_attr("mlflow_run_id", callback.run_id)
            out_dir = run_tags(callback.run_id).get("stance.output_dir")
            if out_dir:  # a pruned trial is never resumed: its checkpoints are only disk
                shutil.rmtree(out_dir, ignore_errors=True)
        if not quiet:
            print(f"trial {trial.number}: pruned {fmt_params(values)}")
        raise
    trial.set_user_attr("mlflow_run_id", rid)
    metrics = run_metrics(rid)
    objective = cfg.tune.objective
    if objective not in metrics:
        close = difflib.get_close_matches(objective, list(metrics), n=5, cutoff=0.5)
        shown = (
            close or sorted(m for m in metrics if "_lang_" not in m and not m.startswith(("precision_", "recall_", "f1_")))[:15]
        )
        raise ObjectiveMissing(
            f"tune.objective: run {rid} (trial {trial.number}) logged no metric {objective!r}; "
            f"{'close ones it logged' if close else 'it logged e.g.'}: {', '.join(shown)}"
        )
    value = float(metrics[objective])
    if not quiet:
        print(f"trial {trial.number}: {objective}={value:.4f} {fmt_params(values)}")
    return value


# -- the search ------------------------------------------------------------------------------------------------------


def run_tune(
    cfg: Config,
    config_path: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
    trials: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    quiet: bool = False,
) -> TuneResult:
    """Run this worker's trials of the config's search. Returns the parent run, the trials table and the best command."""
    check_tune_config(cfg)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial is printed below instead
    n_trials = trials if trials is not None else cfg.tune.trials
    if n_trials < 1:
        raise ConfigError(f"--trials must be >= 1, got {n_trials}")
    _, parts = prepare_data(cfg)  # invalid data fails before the study or the parent run exists
    ignored = ineffective_warning(cfg)
    if ignored:  # once for the search, not once per trial
        print(ignored, file=sys.stderr)
    tracking.setup_tracking()
    storage_url = storage or cfg.tune.storage or default_storage()
    name = study_name or cfg.tune.study_name or default_study_name(cfg, config_path)
    study = open_study(cfg, storage_url, name)
    exp_id = tracking.get_experiment_id(cfg.experiment)
    tracking.reconcile_stale_runs(exp_id)

    parent_id = run_log.start_run(exp_id, name if name.startswith("tune") else f"tune-{name}")
    state = {"trial": None}
    with tracking.closing_run(lambda: f"trial {state['trial']} failed: " if state["trial"] is not None else ""):
        tags = parent_tags(cfg, parts, [cfg.train.seed], config_path)
        # stance.parent (kept): `stance runs compare` leaves it out like a seed sweep's parent (--include-parents shows it);
        # no eval_split: the transfer and UMSAB tables must not take the search for a model evaluated on the test split
        tags.pop("eval_split", None)
        tags.update({"stance.tune": "true", "stance.study": name, "stance.optuna_storage": _redact(storage_url)})
        run_log.set_tags(tags)
        run_log.log_params(
            {
                "tune.trials": n_trials,
                "tune.objective": cfg.tune.objective,
                "tune.direction": cfg.tune.direction,
                "tune.pruner": cfg.tune.pruner or "none",
                "tune.prune_on": prune_metric(cfg),
                "tune.study": name,
                "tune.max_train_rows": cfg.tune.max_train_rows,
                "tune.seed": cfg.tune.seed,
                "tune.timeout_minutes": cfg.tune.timeout_minutes,
                "tune.space": json.dumps(cfg.tune.space, sort_keys=True)[:500],
                "n_train": len(parts["train"]),
                "n_val": len(parts["val"]),
                "n_eval": len(parts["eval"]),
            }
        )
        run_log.log_dict(to_dict(cfg), "config/resolved_config.json")

        def objective(trial):
            state["trial"] = trial.number
            value = run_trial(trial, cfg, parent_id, name, config_path, quiet)
            state["trial"] = None
            return value

        # exceptions other than pruning stop the search: a trial that fails on a bug or bad data would fail again
        timeout = cfg.tune.timeout_minutes * 60 if cfg.tune.timeout_minutes else None
        study.optimize(objective, n_trials=n_trials, timeout=timeout, gc_after_trial=True)
        study_trials = study.get_trials(deepcopy=False)
        table_df = trials_frame(study_trials, cfg.tune.space)
        run_log.log_table(table_df, "tune/trials.json")
        table = trials_table(table_df, cfg.tune.objective)
        run_log.log_text(table, "tune/trials.txt")
        completed = [t for t in study_trials if t.state == optuna.trial.TrialState.COMPLETE]
        counts = {s: sum(t.state.name == s for t in study_trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
        run_log.log_metrics(
            {"tune.n_complete": counts["COMPLETE"], "tune.n_pruned": counts["PRUNED"], "tune.n_failed": counts["FAIL"]}
        )
        best_value, best_params, command = None, {}, ""
        if completed:
            best = study.best_trial
            best_value, best_params = float(best.value), dict(best.params)
            run_log.log_metrics({"best_value": best_value, "best_trial": best.number})
            run_log.log_params({f"best.{k}": v for k, v in best_params.items()})
            run_log.set_tags({"stance.best_run": best.user_attrs.get("mlflow_run_id", ""), "stance.best_trial": str(best.number)})
            command = best_command(config_path, overrides, best_params)
            run_log.set_tags({"stance.best_command": command[:5000]})
    result = TuneResult(parent_id, name, storage_url, table, command, best_value, best_params)
    if not quiet:
        print(f"\nstudy {name} ({storage_url}), parent run {parent_id}:")
        print(table, end="")
        if command:
            print(f"best: trial {study.best_trial.number}, {cfg.tune.objective}={best_value:.4f}\n{command}")
        else:
            print("no trial completed (all pruned?)")
    return result


def _redact(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)
