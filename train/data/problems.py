"""Findings about the corpus: one Problem (file, line, field, message), a DataError carrying all of them, the report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as _field
from pathlib import Path

# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    """One finding about one place in one file. ``line`` is 1-based; ``None`` means the whole file."""

    path: str
    line: int | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"field '{self.field}': " if self.field else ""
        return f"{where}: {what}{self.message}"


class DataError(Exception):
    """Bad data. ``problems`` holds every :class:`Problem` found, not just the first."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem("<data>", None, None, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems = list(problems)
        head = "\n".join(str(p) for p in self.problems[:20])
        more = f"\n... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"{len(self.problems)} data problem(s):\n{head}{more}")


@dataclass
class ValidationReport:
    errors: list[Problem] = _field(default_factory=list)
    warnings: list[Problem] = _field(default_factory=list)
    n_rows: int = 0
    n_files: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class _Record:
    """A parsed row and where it came from."""

    path: str
    line: int
    row: dict
    header_missing: frozenset = frozenset()  # CSV columns already reported once, on the header line

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _display(path: Path) -> str:
    """A path as shown in messages: relative to the working directory when it lies below it."""
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return str(path)
    return str(path) if rel.startswith("..") else Path(rel).as_posix()
