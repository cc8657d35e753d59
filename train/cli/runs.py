"""`stance runs compare` (leaderboard over configurations) and `stance runs report RUN_ID` (one run in Markdown)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from train.cli.common import emit, fail

runs_app = typer.Typer(help="Compare tracked runs: leaderboard and per-run reports.", no_args_is_help=True)


@runs_app.command("compare")
def compare_cmd(
    experiment: Optional[List[str]] = typer.Option(
        None, "--experiment", "-e", help="Experiment name (repeatable). Default: stance-ru-az-2025."
    ),
    metric: str = typer.Option("macro_f1", "--metric", "-m", help="Metric to rank by (mean over seeds)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    include_parents: bool = typer.Option(False, "--include-parents", help="Also list parent runs of seed sweeps."),
):
    """Leaderboard: one row per configuration, seeds pooled (mean ± std), sorted by the metric."""
    if fmt not in ("table", "markdown", "csv"):
        fail(f"--format {fmt!r}: use table, markdown or csv")
    from train.reports.leaderboard import CompareError, format_leaderboard, leaderboard, load_runs

    try:
        board = leaderboard(load_runs(experiment or None, include_parents=include_parents), metric)
    except CompareError as e:
        fail(str(e), 1)
    if board.empty:
        typer.echo(f"no finished runs in {', '.join(experiment or ['stance-ru-az-2025'])}", err=True)
    emit(format_leaderboard(board, metric, fmt), output)


@runs_app.command("report")
def report_cmd(
    run_id: str = typer.Argument(..., help="MLflow run id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Markdown file to write (default: stdout)."),
    top_errors: int = typer.Option(10, help="How many of the most confident mistakes to list."),
):
    """Markdown report of one run: setup, metrics with CI and ECE, per-language/per-class tables, artifacts, mistakes."""
    from train.reports.leaderboard import CompareError
    from train.reports.run_report import run_report

    try:
        text = run_report(run_id, top_errors=top_errors)
    except CompareError as e:
        fail(str(e), 1)
    emit(text, output)


@runs_app.command("verify")
def verify_cmd(
    spec: str = typer.Argument(
        ..., metavar="RUN_ID_OR_MODEL_URI", help="A run id, runs:/RUN_ID/model, models:/NAME/VERSION or models:/NAME@ALIAS."
    ),
    backend: str = typer.Option(
        "torch", "--backend", help="torch or onnx: check the logged model on this runtime, as `stance predict --backend` runs it."
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Check the int8 ONNX graph (approximate: held to its documented tolerance, agreement reported)."
    ),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
):
    """Reload the logged model as `stance predict` does, re-score the run's evaluation rows, recompute its metrics,
    and compare with what the run logged (exit 1 on any mismatch)."""
    from train.inference import InferenceError
    from train.reports.verify import VerifyError, verify
    from train.tracking.registry import quiet_libraries

    quiet_libraries()  # the pass/fail table, not download and weight-loading bars
    if backend not in ("torch", "onnx"):
        fail(f"--backend: {backend!r} is not one of torch, onnx")
    try:
        result = verify(spec, device=device, backend=backend, int8=int8)
    except (VerifyError, InferenceError) as e:
        fail(str(e), 1)
    typer.echo(result.table(), nl=False)
    if not result.passed:
        raise typer.Exit(1)


@runs_app.command("relocate")
def relocate_cmd():
    """After the project folder was moved or copied: point the local store's artifact locations at its current folder
    (the database is backed up first to mlflow.db.bak-<time>)."""
    from train.runtime import store_dir
    from train.tracking.relocate import relocate_store

    store = store_dir()
    try:
        old, backup, changed = relocate_store(store)
    except ValueError as e:
        fail(str(e), 1)
    typer.echo(f"{store / 'mlflow.db'}: {changed} artifact locations moved from {old} to {store}; backup: {backup}")
    missing = [] if (store / "artifacts").is_dir() else [store / "artifacts"]
    if missing:
        typer.echo(f"warning: {missing[0]} does not exist: copy the old store's artifacts/ folder there", err=True)
