"""`stance runs compare` (leaderboard over configurations) and `stance runs report RUN_ID` (one run in Markdown)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

runs_app = typer.Typer(help="Compare tracked runs: leaderboard and per-run reports.", no_args_is_help=True)


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file next to the target, then rename: no half-written report if we are interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _emit(text: str, output: Optional[Path]) -> None:
    if output:
        write_atomic(output, text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)


@runs_app.command("compare")
def compare_cmd(
    experiment: Optional[List[str]] = typer.Option(None, "--experiment", "-e", help="Experiment name (repeatable). Default: stance-ru-az-2025."),
    metric: str = typer.Option("macro_f1", "--metric", "-m", help="Metric to rank by (mean over seeds)."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    include_parents: bool = typer.Option(False, "--include-parents", help="Also list parent runs of seed sweeps."),
):
    """Leaderboard: one row per configuration, seeds pooled (mean ± std), sorted by the metric."""
    if fmt not in ("table", "markdown", "csv"):
        _fail(f"--format {fmt!r}: use table, markdown or csv")
    from train.compare import CompareError, format_leaderboard, leaderboard, load_runs

    try:
        board = leaderboard(load_runs(experiment or None, include_parents=include_parents), metric)
    except CompareError as e:
        _fail(str(e), 1)
    if board.empty:
        typer.echo(f"no finished runs in {', '.join(experiment or ['stance-ru-az-2025'])}", err=True)
    _emit(format_leaderboard(board, metric, fmt), output)


@runs_app.command("report")
def report_cmd(
    run_id: str = typer.Argument(..., help="MLflow run id."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Markdown file to write (default: stdout)."),
    top_errors: int = typer.Option(10, help="How many of the most confident mistakes to list."),
):
    """Markdown report of one run: setup, metrics with CI and ECE, per-language/per-class tables, artifacts, mistakes."""
    from train.compare import CompareError, run_report

    try:
        text = run_report(run_id, top_errors=top_errors)
    except CompareError as e:
        _fail(str(e), 1)
    _emit(text, output)


@runs_app.command("verify")
def verify_cmd(
    spec: str = typer.Argument(..., metavar="RUN_ID_OR_MODEL_URI", help="A run id, runs:/RUN_ID/model, models:/NAME/VERSION or models:/NAME@ALIAS."),
    backend: str = typer.Option("torch", "--backend", help="torch or onnx: check the logged model on this runtime, as `stance predict --backend` runs it."),
    int8: bool = typer.Option(False, "--int8", help="Check the int8 ONNX graph (approximate: held to its documented tolerance, agreement reported)."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
):
    """Reload the logged model as `stance predict` does, re-score the run's evaluation rows, recompute its metrics,
    and compare with what the run logged (exit 1 on any mismatch)."""
    from train.cli_predict import _quiet_libraries
    from train.inference import InferenceError
    from train.verify import VerifyError, verify

    _quiet_libraries()  # the pass/fail table, not download and weight-loading bars
    if backend not in ("torch", "onnx"):
        _fail(f"--backend: {backend!r} is not one of torch, onnx")
    try:
        result = verify(spec, device=device, backend=backend, int8=int8)
    except (VerifyError, InferenceError) as e:
        _fail(str(e), 1)
    typer.echo(result.table(), nl=False)
    if not result.passed:
        raise typer.Exit(1)
