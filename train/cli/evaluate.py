"""`stance eval ...`: tables computed from finished MLflow runs (transfer gaps, the UMSAB benchmark).

Only typer is imported at module level so that `stance --help` stays fast.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from train.cli.common import emit, fail

eval_app = typer.Typer(
    help="Evaluation tables from finished runs: cross-lingual transfer, UMSAB benchmark.", no_args_is_help=True
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
