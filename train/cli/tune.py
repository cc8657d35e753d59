"""`stance tune`: an Optuna search over the config's `tune:` section, each trial a nested run (train/tune.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from train.cli.common import fail, fail_data
from train.cli.models import ensure_offline_model


def tune_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(
        ..., help="YAML config with a tune: section; key=value overrides may follow, e.g. tune.trials=5"
    ),
    trials: Optional[int] = typer.Option(
        None, "--trials", help="Trials this process runs (overrides tune.trials); workers on one study add up."
    ),
    storage: Optional[str] = typer.Option(
        None, "--storage", help="Optuna storage URL (default: tune.storage, else sqlite in the MLflow store folder)."
    ),
    study: Optional[str] = typer.Option(
        None, "--study", help="Study name (default: tune.study_name, else derived from the config)."
    ),
    bootstrap_model: bool = typer.Option(
        True, help="Bootstrap the offline encoder first if the config needs it and it is missing."
    ),
):
    """Search hyperparameters with Optuna: each trial is a nested MLflow run under one parent run; prints the best `stance train` command."""
    from train.config import ConfigError, check_model_source, load_config

    overrides = list(ctx.args)
    if trials is not None and trials < 1:
        fail(f"--trials must be >= 1, got {trials}")
    try:
        cfg = load_config(config, overrides)
        if cfg.model.kind == "transformer" and bootstrap_model:
            ensure_offline_model(cfg.model.name)
        check_model_source(cfg)
        from train.tune import check_tune_config

        check_tune_config(cfg)
    except ConfigError as e:
        fail(str(e))
    from train.data import DataError
    from train.pipeline import VerificationFailed

    try:
        from train.tune import run_tune

        run_tune(cfg, config_path=str(config), overrides=overrides, trials=trials, storage=storage, study_name=study)
    except ConfigError as e:  # also an objective that the first trial did not log
        fail(str(e))
    except VerificationFailed as e:
        fail(str(e), 1)
    except DataError as e:
        fail_data(e)
