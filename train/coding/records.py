"""Reading the tables of a coding round (pools, selections, annotations) with each row's file line, so that a bad
row is reported as file:line: field (results are written with train.formats.write_rows_atomic)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from train.data import DataError, Problem

TABLE_FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(line, row) for every row of a CSV (header on line 1), JSONL or Parquet (line = row number) file; strings stay
    strings (ids like "007" must not become numbers). Unreadable files and lines raise DataError with file and line."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataError(Problem(str(path), None, None, "no such file"))
    if suffix not in TABLE_FORMATS:
        raise DataError(Problem(str(path), None, None, f"unknown format {suffix!r}; use one of {', '.join(TABLE_FORMATS)}"))
    if suffix == ".parquet":
        import pandas as pd

        df = pd.read_parquet(path)
        return [(i + 1, {k: _plain(v) for k, v in row.items()}) for i, row in enumerate(df.to_dict("records"))]
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(Problem(str(path), None, None, f"not UTF-8 ({e})")) from None
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        out = []
        for row in reader:
            if None in row:  # more cells than header columns
                raise DataError(Problem(str(path), reader.line_num, None, "more cells than the header has columns"))
            out.append((reader.line_num, row))
        return out
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(Problem(str(path), n, None, f"invalid JSON ({e.msg})")) from None
        if not isinstance(row, dict):
            raise DataError(Problem(str(path), n, None, "a JSON object per line is expected"))
        out.append((n, row))
    return out


def _plain(value):
    """Parquet scalars as Python values; missing values as None."""
    try:
        import pandas as pd

        if pd.isna(value):
            return None
    except (TypeError, ValueError):  # arrays are not missing values
        pass
    return value.item() if hasattr(value, "item") else value


def columns_of(path: Path, records: list[tuple[int, dict]]) -> list[str]:
    """The columns of a table: the CSV header, else the union of the records' keys in first-seen order."""
    if Path(path).suffix.lower() == ".csv":
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader(fh), [])
    seen: dict[str, None] = {}
    for _, row in records:
        seen.update(dict.fromkeys(row))
    return list(seen)
