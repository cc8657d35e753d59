"""What every command shares: error exits ("error: ..." in red on stderr) and writing a result to stdout or a file."""

from __future__ import annotations

from pathlib import Path

import typer


def fail(message: str, code: int = 2):
    """Exit with `code` (2: bad usage or input, 1: the work itself failed) after printing the message."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def fail_on_data_error(error, code: int = 1) -> None:
    """Print a DataError's problems, one line per kind (the first in full, then how many more and where), and exit
    `code` (1: the data are wrong; 2: a file given on the command line is)."""
    from train.data import summarize

    lines = summarize(error.problems)
    for line in lines:
        typer.echo(f"error: {line}", err=True)
    kinds = f" of {len(lines)} kind(s)" if len(lines) < len(error.problems) else ""
    typer.secho(f"{len(error.problems)} error(s){kinds}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def fail_data(error) -> None:
    """Data problems of a run (train.data.DataError): one line for one problem, else each problem and a count; exit 1."""
    if len(error.problems) == 1:
        fail(str(error.problems[0]), 1)
    for problem in error.problems:
        typer.echo(str(problem), err=True)
    fail(f"{len(error.problems)} data problem(s); fix them or run `stance data validate`", 1)


def emit(text: str, output: Path | None) -> None:
    """To stdout, or written atomically to `output` (then "wrote <output>" on stderr)."""
    if output:
        from train.formats import write_text_atomic

        write_text_atomic(output, text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text, nl=False)
