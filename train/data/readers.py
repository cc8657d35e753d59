"""Reading corpus files (JSONL, CSV with a header) into records that remember their file and line."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from train.data.problems import Problem, _display, _Record, did_you_mean
from train.schema import OPTIONAL_FIELDS, REQUIRED_FIELDS

ALL_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

# --------------------------------------------------------------------------- reading files


def corpus_files(paths: Iterable[str | Path] | str | Path) -> tuple[list[Path], list[Problem]]:
    """Expand files and directories (directories: their *.jsonl and *.csv, sorted, not recursive)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files, problems = [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".jsonl", ".csv"))
            if not found:
                problems.append(Problem(_display(p), None, None, "directory holds no *.jsonl or *.csv files"))
            files.extend(found)
        elif p.is_file() and p.suffix.lower() in (".parquet", ".pq"):
            problems.append(Problem(_display(p), None, None, "a Parquet file; the corpus is JSONL or CSV"))
        elif p.is_file():
            files.append(p)
        else:
            problems.append(Problem(_display(p), None, None, "no such file or directory"))
    return files, problems


def _read_jsonl(path: Path) -> tuple[list[_Record], list[Problem]]:
    shown, records, problems = _display(path), [], []
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return [], [Problem(shown, None, None, "a UTF-16 file; JSON Lines must be UTF-8")]
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):  # a UTF-8 BOM is accepted
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(shown, n, None, f"invalid UTF-8 ({e.reason} at byte {e.start} of the line)"))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(shown, n, None, f"malformed JSON: {e.msg} (column {e.colno})"))
            continue
        except RecursionError:
            problems.append(Problem(shown, n, None, "malformed JSON: nested too deeply"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(shown, n, None, f"line is a JSON {type(obj).__name__}, expected an object"))
            continue
        records.append(_Record(shown, n, obj))
    return records, problems


def _decode_text_file(path: Path) -> tuple[str, list[Problem]]:
    """Decode a whole file; report every line holding invalid UTF-8 (those bytes become U+FFFD)."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "", [Problem(_display(path), None, None, "a UTF-16 file; the corpus must be UTF-8")]
    try:
        return data.decode("utf-8-sig"), []
    except UnicodeDecodeError:
        pass
    problems = []
    for n, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(_display(path), n, None, f"invalid UTF-8 ({e.reason} at byte {e.start} of the line)"))
    return data.decode("utf-8-sig", errors="replace"), problems


def _read_csv(
    path: Path, *, header_required: Iterable[str] = REQUIRED_FIELDS, mapping: dict[str, str] | None = None
) -> tuple[list[_Record], list[Problem]]:
    """Rows of a CSV with a header. Missing/unknown columns are reported once, on line 1.

    With ``mapping`` (importing: CSV column -> field or ``meta.<name>``) columns are renamed first, and every column
    that is neither mapped nor a field is kept in the row's ``meta`` object instead of being refused."""
    shown = _display(path)
    text, problems = _decode_text_file(path)
    if problems and not text:  # undecodable as a whole (UTF-16): one problem, not also "empty CSV file"
        return [], problems
    bad_lines = {p.line for p in problems}
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        return [], problems + [Problem(shown, 1, None, "empty CSV file (expected a header row)")]
    header = [h.strip() for h in header]
    if mapping is None:
        names = header
        problems += [
            Problem(shown, 1, h, f"unknown column (allowed: {', '.join(ALL_FIELDS)}){did_you_mean(h, ALL_FIELDS)}")
            for h in header
            if h not in ALL_FIELDS
        ]
    else:
        names = [mapping.get(h, h if h in ALL_FIELDS and h != "meta" else f"meta.{h}") for h in header]
        problems += _mapping_problems(shown, header, names, mapping)
    for name in header_required:
        if name not in names:
            problems.append(Problem(shown, 1, name, "missing required column" + _map_hint(name, header, mapping)))
    header_missing = frozenset(REQUIRED_FIELDS) - set(names)
    records, start = [], reader.line_num + 1
    for values in _csv_rows(reader, shown, problems):
        line, start = start, reader.line_num + 1
        if not any(v.strip() for v in values) or line in bad_lines:
            continue
        if len(values) != len(header):
            problems.append(Problem(shown, line, None, f"row has {len(values)} values, the header has {len(header)}"))
            continue
        row = {}
        for name, value in zip(names, values):
            if name.startswith("meta."):
                row.setdefault("meta", {})[name[5:]] = value
            elif name in ALL_FIELDS:
                row[name] = value
        records.append(_Record(shown, line, row, header_missing))
    return records, problems


def _mapping_problems(shown: str, header: list[str], names: list[str], mapping: dict[str, str]) -> list[Problem]:
    """A mapped column the file lacks, and two columns that would fill one field."""
    problems = [
        Problem(shown, 1, column, f"--map {column}={target}: the file has no column {column!r}{did_you_mean(column, header)}")
        for column, target in mapping.items()
        if column not in header
    ]
    for target in dict.fromkeys(names):
        sources = [h for h, n in zip(header, names) if n == target]
        if len(sources) > 1:
            problems.append(
                Problem(shown, 1, target, f"columns {', '.join(map(repr, sources))} would all become {target!r}; map only one")
            )
    return problems


def _map_hint(name: str, header: list[str], mapping: dict[str, str] | None) -> str:
    return "" if mapping is None or name == "source" else f" (name the file's column that holds it: --map COLUMN={name})"


def _csv_rows(reader, shown: str, problems: list[Problem]):
    """The reader's rows; a CSV syntax error (e.g. a field past the size limit) ends the file with a problem."""
    try:
        yield from reader
    except csv.Error as e:
        problems.append(Problem(shown, reader.line_num, None, f"unreadable CSV: {e}"))


def _read_any(path: Path) -> tuple[list[_Record], list[Problem]]:
    return _read_csv(path) if path.suffix.lower() == ".csv" else _read_jsonl(path)
