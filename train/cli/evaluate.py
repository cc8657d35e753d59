"""`stance eval ...`: a model scored on a study's own coded file (`file`), and tables computed from finished MLflow
runs (transfer gaps, the UMSAB benchmark).

Only typer is imported at module level so that `stance --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from train.cli.common import emit, fail

eval_app = typer.Typer(
    help="Check a model on your own coded file; evaluation tables from finished runs (transfer, UMSAB).", no_args_is_help=True
)


class TableFormat(str, Enum):
    markdown = "markdown"
    csv = "csv"


@eval_app.command("transfer")
def transfer_cmd(
    experiment: str = typer.Option("stance-transfer", help="MLflow experiment holding the holdout runs (configs/holdout/)."),
    fmt: TableFormat = typer.Option(TableFormat.markdown, "--format", help="markdown or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
):
    """Per language: in-language macro-F1 vs held-out macro-F1 (trained without it) and the gap; also English-only."""
    from train.reports.tables import transfer_markdown, transfer_summary

    try:
        summary = transfer_summary(experiment)
    except LookupError as e:
        fail(str(e), 1)
    if summary.empty:
        fail(f"experiment {experiment!r} has no finished language-holdout runs; train configs/holdout/lang-*.yaml first", 1)
    emit(transfer_markdown(summary) if fmt is TableFormat.markdown else summary.to_csv(index=False), output)


@eval_app.command("umsab-table")
def umsab_table_cmd(
    experiment: str = typer.Option("umsab", help="MLflow experiment of the UMSAB runs (configs/umsab-*.yaml)."),
    fmt: TableFormat = typer.Option(TableFormat.markdown, "--format", help="markdown or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write here (atomically) instead of stdout."),
):
    """Per-language and average macro-F1 of our UMSAB runs beside the published XLM-R, XLM-T and fastText columns."""
    from train.reports.tables import umsab_markdown, umsab_table

    try:
        table = umsab_table(experiment)
    except LookupError as e:
        fail(str(e), 1)
    emit(umsab_markdown(table) if fmt is TableFormat.markdown else table.round(2).to_csv(), output)


@eval_app.command("file")
def file_cmd(
    path: Path = typer.Argument(..., help="Your coded sample: CSV, JSONL or Parquet with a text and a gold-label column."),
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="MLflow model URI (runs:/ID/model, models:/NAME/VERSION, models:/NAME@ALIAS) or a model directory.",
    ),
    gold_column: str = typer.Option(
        "stance", "--gold-column", help="Column holding your labels (conciliatory, neutral, hostile)."
    ),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the statements."),
    map_: Optional[List[str]] = typer.Option(
        None, "--map", help="COLUMN=FIELD as in `stance data import csv` (affiliation=speaker_group, lang=language). Repeatable."
    ),
    errors: Optional[Path] = typer.Option(
        None, "--errors", help="Write every misclassified row here (.csv, .jsonl or .parquet)."
    ),
    top: int = typer.Option(10, "--top", help="How many of the most confident mistakes to show."),
    log: bool = typer.Option(
        False, "--log", help="Log an MLflow evaluation run linked to the model (experiment stance-evaluations)."
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Rows per forward pass."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    long_text: str = typer.Option(
        "truncate",
        "--long-text",
        help="Texts over the model's max length, as in `stance predict`: truncate, window or sentences "
        "(docs/long-texts.md). Evaluate the way you will score the collection.",
    ),
):
    """Score a model on your own coded rows: macro-F1 with a bootstrap 95% interval, per language and speaker group
    (with n), confusion matrix, calibration, and the misclassified rows, most confident first. Exit 2 on a bad file."""
    from train.cli.common import fail_on_data_error
    from train.cli.data import map_options
    from train.data import DataError
    from train.inference import InferenceError
    from train.reports.file_eval import evaluate_file, render, write_rows
    from train.tracking.registry import quiet_libraries

    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device: {device!r} is not one of auto, cpu, cuda")
    if long_text not in ("truncate", "window", "sentences"):
        fail(f"--long-text: {long_text!r} is not one of truncate, window, sentences")
    if errors is not None and errors.suffix.lower() not in (".csv", ".jsonl", ".parquet"):
        fail(f"--errors {errors}: expected a .csv, .jsonl or .parquet file")
    try:
        mapping = map_options(map_, None)
    except ValueError as e:
        fail(str(e))
    quiet_libraries()
    try:
        ev = evaluate_file(model, path, text_column, gold_column, mapping, batch_size, device, long_text)
    except DataError as e:
        fail_on_data_error(e, code=2)
    except InferenceError as e:
        fail(str(e))
    typer.echo(render(ev, top), nl=False)
    if errors is not None:
        write_rows(ev.errors, errors)
        typer.echo(f"wrote {len(ev.errors)} misclassified rows to {errors}", err=True)
    if log:
        from train.tracking.eval_runs import log_file_evaluation

        run_id = log_file_evaluation(ev)
        typer.echo(f"logged evaluation run {run_id} (experiment stance-evaluations)", err=True)
