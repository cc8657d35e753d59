"""`stance data ...`: validate, summarise and import labeled statements.

Only typer is imported at module level so that `stance --help` stays fast; train.data (pandas,
scikit-learn) is imported inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from train.cli.common import fail, fail_on_data_error

data_app = typer.Typer(help="Validate, inspect and import labeled statements.", no_args_is_help=True)
import_app = typer.Typer(help="Convert external data into the labeled-statement schema (JSONL).", no_args_is_help=True)
data_app.add_typer(import_app, name="import")

PATHS_HELP = "Files or directories (directories: their *.jsonl and *.csv). Default: labeled/."


def _paths(paths: Optional[List[Path]]) -> list[Path]:
    from train.runtime import DEFAULT_LABELED_DIR

    if paths:
        return list(paths)
    local = Path("labeled")
    return [local if local.is_dir() else DEFAULT_LABELED_DIR]


@data_app.command("validate")
def validate_cmd(
    paths: Optional[List[Path]] = typer.Argument(None, help=PATHS_HELP, show_default=False),
    near_duplicates: bool = typer.Option(True, help="Also look for near-duplicate texts across splits (warnings)."),
):
    """Check every row; print each problem as path:line: field: message. Exit 1 if there are errors or no rows at all."""
    from train.data import validate

    report = validate(_paths(paths), near_duplicates=near_duplicates)
    for problem in report.errors:
        typer.echo(f"error: {problem}")
    for problem in report.warnings:
        typer.echo(f"warning: {problem}")
    summary = (
        f"{report.n_rows} rows in {report.n_files} file(s): {len(report.errors)} error(s), {len(report.warnings)} warning(s)"
    )
    if not report.n_rows:  # an empty file or a directory without data is not a corpus that passed
        summary += "; nothing validated"
    typer.secho(summary, fg=typer.colors.RED if report.errors or not report.n_rows else typer.colors.GREEN)
    raise typer.Exit(1 if report.errors or not report.n_rows else 0)


@data_app.command("stats")
def stats_cmd(
    paths: Optional[List[Path]] = typer.Argument(None, help=PATHS_HELP, show_default=False),
    write_card: bool = typer.Option(False, "--write-card", help="Also replace the stats block of the dataset card."),
    card: Path = typer.Option(None, help="Dataset card to update (default: labeled/README.md next to the data)."),
):
    """Print count tables (language, speaker group, split, source x stance) as markdown."""
    from train.data import DataError, load_statements, stats_table, write_card_stats
    from train.runtime import DEFAULT_LABELED_DIR

    paths = _paths(paths)
    try:
        df = load_statements(paths)
        typer.echo(stats_table(df))
        if write_card:
            card = card or (paths[0] / "README.md" if paths[0].is_dir() else DEFAULT_LABELED_DIR / "README.md")
            write_card_stats(card, df)
            typer.echo(f"updated {card}", err=True)
    except DataError as e:
        fail_on_data_error(e)


@import_app.command("csv")
def import_csv_cmd(
    csv_path: Path = typer.Argument(..., help="CSV with a header row; columns by field name."),
    out: Path = typer.Argument(..., help="JSONL file to write."),
    source: Optional[str] = typer.Option(None, help="Source for rows without one (authored, seed_article, imported)."),
    language: Optional[str] = typer.Option(None, help="Default language code."),
    speaker: Optional[str] = typer.Option(None, help="Default speaker."),
    speaker_group: Optional[str] = typer.Option(None, help="Default speaker group."),
    register: Optional[str] = typer.Option(None, help="Default register."),
    date: Optional[str] = typer.Option(None, help="Default date (YYYY-MM-DD)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Convert a CSV into schema JSONL. A missing split is derived from the id; rows are validated first."""
    from train.data import DataError, import_csv

    defaults = {"language": language, "speaker": speaker, "speaker_group": speaker_group, "register": register, "date": date}
    try:
        n = import_csv(csv_path, out, source=source, defaults=defaults, overwrite=overwrite)
    except DataError as e:
        fail_on_data_error(e)
    except FileExistsError as e:
        fail(str(e), 1)
    typer.echo(f"wrote {n} rows to {out}")


@import_app.command("tweeteval")
def import_tweeteval_cmd(
    path: Path = typer.Argument(
        ..., help="TweetEval-style folder ({train,val,test}_text.txt + _labels.txt) or a parent of language folders."
    ),
    out: Path = typer.Argument(..., help="JSONL file to write."),
    language: Optional[str] = typer.Option(None, help="Language code (default: from the folder name)."),
    label_map: Optional[str] = typer.Option(
        None, help='Benchmark label -> stance, e.g. "0=hostile,1=neutral,2=conciliatory" (the default).'
    ),
    id_prefix: Optional[str] = typer.Option(None, help="Id prefix (default: the dataset folder's name)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Import a TweetEval-style benchmark (e.g. UMSAB) as source 'imported', keeping its official splits."""
    from train.data import DataError, import_tweeteval

    mapping = None
    if label_map:
        try:
            mapping = dict(item.split("=", 1) for item in label_map.split(","))
        except ValueError:
            fail("--label-map must look like 0=hostile,1=neutral,2=conciliatory")
    try:
        n = import_tweeteval(path, out, language=language, label_map=mapping, id_prefix=id_prefix, overwrite=overwrite)
    except DataError as e:
        fail_on_data_error(e)
    except (FileExistsError, ValueError) as e:
        fail(str(e), 1)
    typer.echo(f"wrote {n} rows to {out}")
