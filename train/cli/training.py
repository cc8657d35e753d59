"""`stance train`: one config (plus key=value overrides) -> one MLflow run, or a seed sweep (train/pipeline.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from train.cli.common import fail, fail_data
from train.cli.models import ensure_offline_model

DEFAULT_CONFIG = "configs/default.yaml"
TRAIN_SETTINGS = {"allow_extra_args": True, "ignore_unknown_options": False}


def train_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(DEFAULT_CONFIG, help="YAML config; key=value overrides may follow, e.g. train.lr=3e-5"),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the last failed/interrupted run of this config from its checkpoint."
    ),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="With --resume: the MLflow run to continue."),
    seeds: int = typer.Option(
        1, "--seeds", help="Train with N seeds (seed, seed+1, ...): one parent run with mean/std, a child run per seed."
    ),
    bootstrap_model: bool = typer.Option(
        True, help="Bootstrap the offline encoder first if the config needs it and it is missing."
    ),
):
    """Train one model from a config and log the run to MLflow."""
    from train.config import ConfigError, check_model_source, load_config

    overrides = list(ctx.args)
    if run_id and not resume:
        fail("--run-id continues an interrupted run and needs --resume (without it the run would be trained again into that run)")
    if resume and seeds > 1:
        fail("--resume continues one interrupted run; it cannot be combined with --seeds (resume each seed's run with --run-id)")
    try:
        cfg = load_config(config, overrides)
        if cfg.model.kind == "transformer" and bootstrap_model:
            ensure_offline_model(cfg.model.name)
        check_model_source(cfg)  # after the bootstrap, which creates the default model directory
    except ConfigError as e:
        fail(str(e))
    from train.data import DataError, SelectionError
    from train.pipeline import VerificationFailed
    from train.tracking.runs import ResumeError

    try:
        if seeds > 1:
            from train.pipeline import run_seeds

            run_seeds(cfg, seeds, config_path=str(config))
        else:
            from train.pipeline import run_training

            run_training(cfg, resume=resume, run_id=run_id, config_path=str(config))
    except ResumeError as e:
        fail(str(e))
    except VerificationFailed as e:
        fail(str(e), 1)
    except SelectionError as e:  # a wrong value in the config (a language the corpus lacks): one line, exit 2
        fail(e.problems[0].message)
    except DataError as e:
        fail_data(e)
