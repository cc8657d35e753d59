"""A training run, top to bottom: config -> validated data -> estimator.fit -> calibration -> evaluation -> the model
logged, verified as `stance predict` would load it, registered. Also seed sweeps (one parent run, a child per seed).

Every step is a call into a lower layer (data, models, tracking, reports); the run reads the same for both model kinds.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from train import tracking
from train.config import Config, ineffective_warning, run_params, to_dict
from train.data import calibration_rows, load_eval_files, prepare_data
from train.metrics import evaluation_metrics, metric_key
from train.models import estimator_from_config
from train.models.fitting import fit_context
from train.models.trainer import has_checkpoint
from train.naming import (
    child_run_name,
    config_digest,
    data_digest,
    default_run_name,
    model_family,
    parent_run_name,
)
from train.reports.console import EpochTable, data_summary, results_table, rows_per_file
from train.reports.verify import verify
from train.runtime import pick_device, set_threads
from train.schema import LABELS
from train.tracking import runs as run_log
from train.tracking.queries import get_run, run_metrics
from train.tracking.quiet import harmless_warnings_dropped, quiet_training
from train.tracking.registry import quiet_libraries
from train.tracking.runs import ResumeError, TrainingInterrupted  # noqa: F401 - re-exported: callers stop runs with them

# Metrics logged once per epoch; everything else a run logs is a final metric that a seed sweep aggregates.
PER_EPOCH_PREFIXES = ("val_", "train_loss", "learning_rate")


class VerificationFailed(RuntimeError):
    """The logged model does not reproduce the run's own numbers: it is not registered, and the run fails."""


def run_training(
    cfg: Config,
    resume: bool = False,
    run_id: str | None = None,
    config_path: str | None = None,
    parent_run_id: str | None = None,
    quiet: bool = False,
    callbacks=(),
    tags: dict | None = None,
    announce_ignored: bool = True,
) -> str:
    """Train and evaluate one model, logging everything to MLflow. Returns the MLflow run id.

    callbacks: extra Trainer callbacks (the transformer only; `stance tune` reports epochs to Optuna with one);
    tags: extra tags set on the run when it opens; announce_ignored: print the settings that have no effect (a search
    prints them once, not per trial; every run records them in its stance.ignored_settings tag either way)."""
    quiet_training()
    threads = set_threads(cfg.train.threads)
    _, parts = prepare_data(cfg)  # fails on invalid data before any run is opened
    extra_sets = load_eval_files(cfg, parts["train"])
    calib = calibration_rows(cfg, parts, extra_sets)  # like the data above: refused before any run exists
    rows_digest = data_digest(parts)
    ignored = ineffective_warning(cfg)
    if ignored and announce_ignored:
        print(ignored, file=sys.stderr)
    if not quiet:
        print(data_summary(parts, rows_per_file(cfg.data.paths, parts), rows_digest, _eval_name(cfg)), end="")
    tracking.setup_tracking()
    exp_id = tracking.get_experiment_id(cfg.experiment)
    tracking.reconcile_stale_runs(exp_id)
    digest = config_digest(cfg)
    if resume and run_id is None:
        run_id = tracking.find_resumable_run(exp_id, digest, has_checkpoint)
    if resume:
        tracking.check_resume(cfg.experiment, run_params(cfg), exp_id, digest, run_id)
    if resume and run_id:  # the same config on other rows is another run: its checkpoint learned from the old rows
        logged = get_run(run_id)[0].data.params.get("data.digest")
        if logged and logged != rows_digest:
            raise ResumeError(
                f"--resume: the data changed since run {run_id} was interrupted (data digest {logged} -> {rows_digest}); "
                f"train anew without --resume"
            )
    run_name = cfg.run_name or default_run_name(cfg)
    out_dir = Path(cfg.output_dir) / cfg.experiment / (run_id or f"{run_name}-{digest}-{int(time.time())}")

    rid = run_log.start_run(exp_id, run_name, run_id=run_id, parent_run_id=parent_run_id)
    with tracking.closing_run():
        if run_id is None:
            out_dir = out_dir.with_name(rid)
        _log_run_setup(cfg, parts, digest, rows_digest, out_dir, threads, config_path, ignored)
        if tags:
            run_log.set_tags(tags)
        started = time.time()
        train, val = parts["train"], parts["val"]
        model = estimator_from_config(cfg)
        table = EpochTable(expects_val=len(val) > 0) if not quiet else None

        def report(metrics, step=None):
            run_log.log_metrics(metrics, step)
            if table:
                table(metrics, step)

        with fit_context(report=report, checkpoint_dir=out_dir, resume=resume, trainer_callbacks=tuple(callbacks)):
            model.fit(
                train["text"].tolist(),
                train["stance"].tolist(),
                *((val["text"].tolist(), val["stance"].tolist(), val["language"].tolist()) if len(val) else ()),
            )
        if table:
            table.flush()
        if calib is not None and len(calib):
            # after the val metrics above (computed at temperature 1)
            method = cfg.train.calibration_method
            run_log.log_metric(
                "temperature",
                model.calibrate(calib["text"].tolist(), calib["stance"].tolist(), cfg.train.eval_batch_size, method),
            )
            if model.class_bias is not None:
                run_log.log_metrics({f"class_bias/{label}": b for label, b in zip(model.labels, model.class_bias)})
        train_seconds = time.time() - started
        if getattr(model, "train_compute_dtype", None):
            run_log.set_tags({"train.compute_dtype": model.train_compute_dtype})
        metrics = evaluate_and_log(model, parts["eval"], cfg.train.eval_batch_size)
        results = {_eval_name(cfg): (len(parts["eval"]), metrics)}
        for name, eval_df in extra_sets.items():
            results[name] = (len(eval_df), evaluate_and_log(model, eval_df, cfg.train.eval_batch_size, prefix=name))
        run_log.set_tags({"stance.eval_sets": ",".join(["eval", *extra_sets])})
        run_log.log_metric("train_seconds", train_seconds)
        # The model is stored once, in the run's artifacts: saved to a temporary folder, logged, folder removed.
        with tempfile.TemporaryDirectory(prefix="stance-model-") as tmp:
            with harmless_warnings_dropped():
                tracking.log_stance_model(model.save(Path(tmp) / "model"), train["text"].tolist())
        del model  # verify loads the logged copy; two models in memory would double the peak for nothing
        verify_and_register(rid, cfg.register_as, quiet)
        if not quiet:
            print(results_table(results), end="")
            print(f"run {rid} ({run_name}, data {rows_digest}): trained in {train_seconds:.0f}s")
    # Checkpoints exist so that an interrupted run can resume; a finished one needs none of them.
    shutil.rmtree(out_dir, ignore_errors=True)
    return rid


def _run_tags(cfg: Config, parts: dict, config_path: str | None) -> dict[str, str]:
    """The tags leaderboards, the transfer summary and the UMSAB table filter on (shared by runs and sweep parents)."""
    held = cfg.data.holdout_languages + cfg.data.holdout_speaker_groups
    tags = {
        "model_family": model_family(cfg),
        "model_kind": cfg.model.kind,
        "languages": ",".join(sorted(set(parts["train"]["language"]))),
        "eval_languages": ",".join(sorted(set(parts["eval"]["language"]))),
        "eval_split": "holdout" if held else cfg.data.eval_split,
        "holdout": ",".join(held) or "none",
        "device": pick_device(),
        **tracking.git_info(),
    }
    if config_path:
        tags["config_file"] = str(config_path)
    return tags


def parent_tags(cfg: Config, parts: dict, seeds: list[int], config_path: str | None) -> dict[str, str]:
    """The tags of a run that stands for several (a seed sweep's or a search's parent): leaderboards leave it out
    (stance.parent) unless asked for."""
    return {
        "stance.parent": "true",
        **tracking.process_tags(),
        **_run_tags(cfg, parts, config_path),
        "seeds": ",".join(map(str, seeds)),
    }


def _eval_name(cfg: Config) -> str:
    """What the run's final metrics are of: test, val, or holdout (rows of held-out languages / groups)."""
    return "holdout" if cfg.data.holdout_languages or cfg.data.holdout_speaker_groups else cfg.data.eval_split


def _log_run_setup(cfg, parts, digest, rows_digest, out_dir, threads, config_path, ignored=None):
    """Tags and params of a run: only the settings that shaped it (config.applies), the rows' digest, and a note of
    the settings the config changed that had no effect."""
    tags = {
        **tracking.process_tags(),
        "stance.config_digest": digest,
        "data.digest": rows_digest,
        "stance.output_dir": str(out_dir),
        **_run_tags(cfg, parts, config_path),
        "seed": str(cfg.train.seed),
    }
    if ignored:
        tags["stance.ignored_settings"] = ignored.removeprefix("warning: ")
    run_log.set_tags(tags)
    params = run_params(cfg)
    params.update(
        {
            "data.digest": rows_digest,
            "n_train": len(parts["train"]),
            "n_val": len(parts["val"]),
            "n_eval": len(parts["eval"]),
            "threads": threads,
        }
    )
    run_log.log_params(params)
    run_log.log_dict(to_dict(cfg), "config/resolved_config.json")
    run_log.log_text(tracking.installed_packages(), "environment/requirements.txt")
    source = ",".join(cfg.data.paths)
    for name in ("train", "val", "eval"):
        if len(parts[name]):
            tracking.log_dataset(parts[name], name, source)


def evaluate_and_log(model, eval_df, batch_size: int = 64, prefix: str = "") -> dict:
    """Score an evaluation set and log its metrics and artifacts: the eval split unprefixed (metrics `macro_f1`,
    artifacts in `eval/`), an extra set under its name (metrics `<name>/macro_f1`, artifacts in `<name>/`)."""
    return log_scored_set(eval_df, model.predict_proba(eval_df["text"].tolist(), batch_size=batch_size), prefix)


def log_scored_set(eval_df, proba: np.ndarray, prefix: str = "") -> dict:
    """evaluate_and_log for probabilities already computed (exactly what the model's predict_proba returns)."""
    y = eval_df["stance"].map(LABELS.index).to_numpy()
    metrics = evaluation_metrics(y, proba, eval_df["language"].tolist())
    run_log.log_metrics({metric_key(prefix, k): v for k, v in metrics.items()})
    tracking.log_evaluation(eval_df, proba, metrics, prefix=prefix or "eval")
    return metrics


def verify_and_register(run_id: str, register_as: str | None, quiet: bool = False, device: str = "auto") -> str:
    """Reload the logged model the way `stance predict` does and check it against the run's numbers; tag the run
    with the outcome and register the model only when it passed. Returns the registered version ("" when none).
    device: where to reload it (the device the run scored on: another one computes other float rounding)."""
    quiet_libraries()
    result = verify(run_id, device=device)
    run_log.set_tags({"stance.verified": "passed" if result.passed else "failed"})
    run_log.log_text(result.table(), "verify.txt")
    if not result.passed:
        print(result.table(), end="", file=sys.stderr)
    elif not quiet:  # the full table is the run's verify.txt
        print(f"verify: the logged model reproduces the run's numbers ({len(result.checks)} checks passed, see verify.txt)")
    if not result.passed:
        raise VerificationFailed(f"the logged model does not reproduce run {run_id}'s numbers (see verify.txt); not registered")
    if not register_as:
        return ""
    version = run_log.register_model(run_id, register_as)
    run_log.set_tags({"stance.registered_version": version})
    return version


# -- seed sweeps -----------------------------------------------------------------------------------------------------


def seed_list(first: int, n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"--seeds must be >= 1, got {n}")
    return [first + i for i in range(n)]


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(PER_EPOCH_PREFIXES)}


def aggregate_seed_metrics(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """`<m>_mean`, `<m>_std` (sample standard deviation, ddof=1; 0 for one seed) and `<m>` = mean, for every final
    metric that all seeds logged."""
    if not per_seed:
        return {}
    common = set.intersection(*(set(final_metrics(m)) for m in per_seed))
    out = {}
    for name in sorted(common):
        values = np.array([m[name] for m in per_seed], dtype=float)
        mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.update({name: mean, f"{name}_mean": mean, f"{name}_std": std})
        if "f1/" in name:  # the runs table's at-a-glance metrics (tracking.artifacts.log_summary) are shown rounded
            out[name] = round(mean, 3)
    return out


def run_seeds(cfg: Config, n_seeds: int, config_path: str | None = None, quiet: bool = False) -> str:
    """Train the config with seeds seed, seed+1, ... as nested child runs under one parent run that holds the mean and
    standard deviation of every final metric. Returns the parent run id.

    Only the first seed's model is registered (after every seed has finished), so a sweep adds one registry version.
    If any seed fails the parent is marked FAILED (KILLED on interrupt) and the error re-raised.
    """
    import pandas as pd

    seeds = seed_list(cfg.train.seed, n_seeds)
    _, parts = prepare_data(cfg)  # invalid data fails before the parent run opens
    tracking.setup_tracking()
    exp_id = tracking.get_experiment_id(cfg.experiment)
    tracking.reconcile_stale_runs(exp_id)

    parent_id = run_log.start_run(exp_id, parent_run_name(cfg, n_seeds))
    current = None
    # the parent must never be left RUNNING, nor FINISHED after a failed seed
    with tracking.closing_run(lambda: f"seed {current} failed: " if current is not None else ""):
        run_log.set_tags({**parent_tags(cfg, parts, seeds, config_path), "data.digest": data_digest(parts)})
        params = run_params(cfg)
        params.update(
            {
                "data.digest": data_digest(parts),
                "train.seed": ",".join(map(str, seeds)),
                "n_seeds": n_seeds,
                "n_train": len(parts["train"]),
                "n_val": len(parts["val"]),
                "n_eval": len(parts["eval"]),
            }
        )
        run_log.log_params(params)
        child_ids, per_seed = [], []
        for seed in seeds:
            current = seed
            child_cfg = dataclasses.replace(
                cfg, register_as=None, run_name=child_run_name(cfg, seed), train=dataclasses.replace(cfg.train, seed=seed)
            )
            rid = run_training(child_cfg, config_path=config_path, parent_run_id=parent_id, quiet=quiet)
            child_ids.append(rid)
            per_seed.append(run_metrics(rid))
        current = None
        summary = aggregate_seed_metrics(per_seed)
        run_log.log_metrics(summary)
        table = pd.DataFrame([{"seed": s, "run_id": r, **final_metrics(m)} for s, r, m in zip(seeds, child_ids, per_seed)])
        run_log.log_table(table, "seeds/per_seed_metrics.json")
        if cfg.register_as:
            version = run_log.register_model(child_ids[0], cfg.register_as)
            run_log.set_tags({"stance.registered_child": child_ids[0], "stance.registered_version": version})
        if not quiet:
            print(
                f"parent run {parent_id} ({n_seeds} seeds): macro_f1={summary['macro_f1_mean']:.4f} "
                f"± {summary['macro_f1_std']:.4f} (sample std)"
            )
    return parent_id
