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
    every: bool = typer.Option(False, "--all", help="Print every problem on its own line (default: one line per kind)."),
):
    """Check every row against the schema and the folder's codebook.yaml; print the problems as path:line: field:
    message, one line per kind with how many more rows share it (--all: each). Exit 1 on errors or no rows at all."""
    from train.data import summarize, validate

    report = validate(_paths(paths), near_duplicates=near_duplicates)
    show = (lambda problems: list(map(str, problems))) if every else summarize
    for line in show(report.errors):
        typer.echo(f"error: {line}")
    for line in show(report.warnings):
        typer.echo(f"warning: {line}")
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
    csv_path: Path = typer.Argument(..., help="CSV with a header row."),
    out: Path = typer.Argument(..., help="JSONL file to write (validated against the codebook.yaml of its folder)."),
    map_: Optional[List[str]] = typer.Option(
        None,
        "--map",
        help="COLUMN=FIELD: read the file's column as a field (quote=text, quote_id=id, affiliation=speaker_group, url=meta.source). Repeatable.",
    ),
    mapping_file: Optional[Path] = typer.Option(None, "--mapping", help="YAML file of COLUMN: FIELD lines (the same as --map)."),
    source: Optional[str] = typer.Option(None, help="Source for rows without one (authored, seed_article, imported)."),
    language: Optional[str] = typer.Option(None, help="Default language code."),
    speaker: Optional[str] = typer.Option(None, help="Default speaker."),
    speaker_group: Optional[str] = typer.Option(None, help="Default speaker group."),
    register: Optional[str] = typer.Option(None, help="Default register."),
    date: Optional[str] = typer.Option(None, help="Default date (YYYY-MM-DD)."),
    overwrite: bool = typer.Option(False, help="Replace OUT if it exists."),
):
    """Convert a CSV into schema JSONL. Columns that are not fields are kept in each row's `meta`; without an id column,
    ids are generated from the text; a missing split is derived from the id. Nothing is written unless every row is valid."""
    from train.data import DataError, import_csv

    defaults = {"language": language, "speaker": speaker, "speaker_group": speaker_group, "register": register, "date": date}
    try:
        mapping = map_options(map_, mapping_file)
        result = import_csv(csv_path, out, source=source, defaults=defaults, overwrite=overwrite, mapping=mapping)
    except DataError as e:
        fail_on_data_error(e)
    except FileExistsError as e:
        fail(str(e), 1)
    except ValueError as e:
        fail(str(e))
    typer.echo(f"wrote {result.rows} rows to {out}")
    if result.generated_ids:
        typer.echo(
            f"ids: {result.generated_ids} generated from the text ({csv_path.stem}-<hash>): no id column (--map COLUMN=id)"
        )
    if result.meta_columns:
        typer.echo(f"kept in meta: {', '.join(result.meta_columns)}")
    for raw, group in result.groups_read_as.items():
        typer.echo(f"speaker_group {raw!r} read as {group!r}")


def map_options(items: Optional[List[str]], mapping_file: Optional[Path]) -> dict[str, str]:
    """--mapping FILE, then --map COLUMN=FIELD on top; ValueError with what is wrong."""
    import yaml

    mapping = {}
    if mapping_file is not None:
        try:
            loaded = yaml.safe_load(mapping_file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ValueError(f"--mapping {mapping_file}: cannot read it: {e}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise ValueError(f"--mapping {mapping_file}: expected lines of COLUMN: FIELD, e.g. quote: text")
        mapping.update({str(k): v for k, v in loaded.items()})
    for item in items or []:
        column, sep, target = item.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise ValueError(f"--map {item}: expected COLUMN=FIELD, e.g. --map quote=text")
        mapping[column.strip()] = target.strip()
    from train.data import parse_mapping

    return parse_mapping(mapping)


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
