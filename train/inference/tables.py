"""Whole tables, each row with its line: the one reader of the CSV / JSONL / Parquet files people write or export
(annotation pools, order files, annotations, labeled and coded samples). A bad row is an error naming the file and the
line (CSV, JSONL) or row (Parquet), which each command reports in its own words. Batch prediction streams its input in
chunks instead, keeping bad rows as rows with a reason (train.inference.readers.iter_chunks)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from train.inference.readers import FORMATS, _csv_reader, _text_encoding, jsonl_records
from train.inference.rows import InferenceError

_PANDAS_INDEX = re.compile(r"__index_level_\d+__")  # the column pandas stores an unnamed index in


class TableError(InferenceError):
    """A table that cannot be read: `path`, `line` (the CSV / JSONL line, the Parquet row; None: the whole file) and
    `reason`, so that each command can report it as its own file:line problem."""

    def __init__(self, path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{where(path, line)}: {reason}")


def where(path, line: int | None) -> str:
    """`file:line` (CSV, JSONL), `file: row N` (Parquet has no lines), the file alone when line is None."""
    if line is None:
        return str(path)
    return f"{path}: row {line}" if FORMATS.get(Path(path).suffix.lower()) == "parquet" else f"{path}:{line}"


def read_rows(
    path, role: str = "table", encoding: str = "utf-8", columns=None, fmt: str | None = None
) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(line, record)]) of a whole CSV, JSONL or Parquet file, every row or a TableError naming the file
    and line (a table with holes would silently lose rows).

    CSV: header on line 1; each record's true first line (a quoted cell may span lines); cells as text (an id "007"
    stays "007"); empty cells None; a row with more or fewer cells than the header, or bytes that are not `encoding`,
    an error. JSONL: the line number; each line one JSON object, valid UTF-8. Parquet: the row number; plain Python
    values (NaN as None). Blank lines, and CSV lines of empty cells only, are skipped. `columns`: keep only these;
    `fmt`: csv, jsonl or parquet when the extension does not say it; `role`: the file's part, for messages."""
    path = Path(path)
    fmt = fmt or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TableError(path, None, f"unknown {role} format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    if not path.is_file():
        raise TableError(path, None, "no such file")
    keep = None if columns is None else set(columns)
    if fmt == "csv":
        return _csv_rows(path, encoding, keep)
    if fmt == "parquet":
        return _parquet_rows(path, keep)
    rows = []
    try:
        for line, rec, problem in jsonl_records(path):
            if rec is None or problem:
                raise TableError(path, line, problem)
            rows.append((line, rec if keep is None else {k: v for k, v in rec.items() if k in keep}))
    except TableError:
        raise
    except InferenceError as e:  # a UTF-16 file
        raise TableError(path, None, str(e).removeprefix(f"{path}: ")) from None
    return list(dict.fromkeys(k for _, rec in rows for k in rec)), rows


def _unique(path: Path, names: list[str]) -> None:
    dupes = sorted({str(c) for c in names if names.count(c) > 1})
    if dupes:
        raise TableError(path, None, f"duplicate column names {', '.join(map(repr, dupes))}; give each column one name")


def _csv_rows(path: Path, encoding: str, keep) -> tuple[list[str], list[tuple[int, dict]]]:
    rows, reader = [], None
    try:
        with open(path, encoding=_text_encoding(encoding), newline="") as fh:
            reader = _csv_reader(fh)
            header = next(reader, None)
            if header is None:
                raise TableError(path, None, "empty file (a CSV needs a header row)")
            names = [h or f"Unnamed: {i}" for i, h in enumerate(header)]  # as pandas names a blank header
            _unique(path, names)
            pick = [(i, h) for i, h in enumerate(names) if keep is None or h in keep]
            start = reader.line_num + 1
            for values in reader:
                line, start = start, reader.line_num + 1  # line_num is the record's last line; it starts after the last
                if not any(v.strip() for v in values):
                    continue
                if len(values) != len(names):
                    raise TableError(path, line, f"{len(values)} values, the header has {len(names)}")
                rows.append((line, {h: values[i] or None for i, h in pick}))
    except csv.Error as e:
        raise TableError(path, reader.line_num if reader else None, f"unreadable CSV ({e})") from None
    except UnicodeDecodeError:
        raise _undecodable(path, encoding) from None
    return [h for _, h in pick], rows


def _undecodable(path: Path, encoding: str) -> TableError:
    """The error for a CSV that is not `encoding`, at the line of the first bad byte (the text reader decodes ahead of
    the csv reader, so its line_num does not say)."""
    data = path.read_bytes()
    try:
        data.decode(_text_encoding(encoding))
        line, what = None, ""
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        what = f" (byte 0x{data[e.start]:02x})" if e.start < len(data) else " (truncated at the end)"
    return TableError(path, line, f"cannot decode as {encoding}{what}; save the file as UTF-8")


def _parquet_rows(path: Path, keep) -> tuple[list[str], list[tuple[int, dict]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows: list[tuple[int, dict]] = []
    try:
        pf = pq.ParquetFile(path)
        names = [n for n in pf.schema_arrow.names if not _PANDAS_INDEX.fullmatch(n)]
        _unique(path, names)
        names = [n for n in names if keep is None or n in keep]
        for batch in pf.iter_batches(batch_size=10_000, columns=names):
            done = len(rows)
            _check_utf8(path, batch, done)
            for i, rec in enumerate(batch.to_pylist(), done + 1):
                rows.append((i, {k: None if isinstance(v, float) and v != v else v for k, v in rec.items()}))
    except (pa.ArrowException, OSError) as e:
        raise TableError(path, None, f"not a readable Parquet file ({e})") from None
    return names, rows


def _check_utf8(path: Path, batch, done: int) -> None:
    """Parquet writers need not validate UTF-8: a string cell holding other bytes is an error naming its row."""
    import pyarrow as pa

    for f, col in zip(batch.schema, batch.columns):
        if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            continue
        try:
            col.validate(full=True)
        except pa.ArrowInvalid:
            raw = col.view(pa.large_binary() if pa.types.is_large_string(f.type) else pa.binary()).to_pylist()
            bad = next((i for i, v in enumerate(raw) if v is not None and v.decode("utf-8", "replace").encode() != v), None)
            raise TableError(path, None if bad is None else done + bad + 1, f"column {f.name!r}: invalid UTF-8") from None
