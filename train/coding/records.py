"""Reading the tables of a coding round (pools, selections, annotations) with each row's file line, so that a bad
row is reported as file:line: field (the reader is train.inference.tables.read_rows; results are written with
train.formats.write_rows_atomic)."""

from __future__ import annotations

from pathlib import Path

from train.data import DataError, Problem
from train.inference.tables import TableError, read_rows


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(line, row)]) of a CSV (header on line 1, each row's first line), JSONL or Parquet (line = row number)
    file: the CSV header, else the records' keys in first-seen order. Strings stay strings (ids like "007" must not
    become numbers), empty CSV cells and missing values are None. An unreadable file or line raises DataError with
    file and line."""
    try:
        return read_rows(path)
    except TableError as e:
        raise DataError(Problem(e.path, e.line, None, e.reason)) from None


def read_records(path: Path) -> list[tuple[int, dict]]:
    """(line, row) for every row of the table (see read_table)."""
    return read_table(path)[1]
