"""Findings about the corpus: one Problem (file, line, field, message), a DataError carrying all of them, the report."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable
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


def did_you_mean(value, choices: Iterable[str]) -> str:
    """'. Did you mean "x"?' for the closest valid choice (as the config loader says it), to end a message; else ''."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6) if isinstance(value, str) else []
    return f". Did you mean {close[0]!r}?" if close else ""


_VALUES = re.compile(r"'[^']*'|\"[^\"]*\"|\b\d+\b")


def summarize(problems: list[Problem], examples: int = 5) -> list[str]:
    """One line per kind of problem (same file, field and message once the quoted values are left out), in order of
    first appearance: the first occurrence in full, then how many rows share it and their first lines. A kind that
    occurs once prints exactly as str(problem)."""
    kinds: dict[tuple, list[Problem]] = {}
    for p in problems:
        kinds.setdefault((p.path, p.field, _VALUES.sub("_", p.message.split(". Did you mean")[0])), []).append(p)
    lines = []
    for group in kinds.values():
        line = str(group[0])
        if len(group) > 1:
            shown = list(dict.fromkeys(str(p.line) for p in group[1:] if p.line is not None))[:examples]
            more = len({p.line for p in group[1:] if p.line is not None}) - len(shown)
            line += f"  [and {len(group) - 1} more like it" + (f": lines {', '.join(shown)}" if shown else "")
            line += (f" and {more} more" if more > 0 and shown else "") + "]"
        lines.append(line)
    return lines


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
    codebook: object = None  # the Codebook of the row's folder (None: the shipped default)

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
