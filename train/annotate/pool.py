"""The statements to label: a pool file (CSV, JSONL or Parquet, e.g. `stance predict` output) read into rows that
remember their file and line, and the order to present them in (pool order, or an `id` column from `stance select`
or a label-problems report, with an optional `reason` shown to the annotator)."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from pathlib import Path

from train.inference.rows import RUN_COLUMNS, InferenceError
from train.inference.tables import read_rows
from train.schema import LABELS


class AnnotateError(Exception):
    """A problem with the user's files or options (exit code 2), naming the file, line and field."""


# Columns that carry the model's (or the corpus's) answer: never shown until the annotator asks, to avoid anchoring.
SUGGESTION_COLUMNS = ("pred_stance", "pred_confidence", *(f"prob_{name}" for name in LABELS), "stance")
HIDDEN_COLUMNS = ("pred_error", *RUN_COLUMNS, "split")  # bookkeeping of predict / the corpus, not context


@dataclass
class PoolRow:
    id: str
    path: Path  # the file it came from (a pool may be a folder of files, e.g. labeled/ for a review)
    line: int  # 1-based line of the file (CSV, JSONL) or row number (Parquet)
    values: dict

    @property
    def where(self) -> str:
        parquet = self.path.suffix.lower() in (".parquet", ".pq")
        return f"{self.path}: row {self.line}" if parquet else f"{self.path}:{self.line}"


@dataclass
class Pool:
    path: Path
    text_column: str
    columns: list[str]
    rows: list[PoolRow]
    by_id: dict[str, PoolRow] = field(default_factory=dict)


def _plain(v):
    """A cell as a JSON value: NaN (JSON allows it) -> None, dates and times -> ISO text."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, (_dt.datetime, _dt.date, _dt.time)):
        return v.isoformat()
    return v


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(columns, [(line, record)]) of a CSV, JSONL or Parquet file (train.inference.tables.read_rows), values as JSON
    values. A malformed line is an error naming it: a pool with holes would silently lose statements."""
    try:
        columns, rows = read_rows(path, "pool")
    except InferenceError as e:  # no such file, unknown extension, a bad line, unreadable Parquet: the reader's words
        raise AnnotateError(str(e)) from None
    return columns, [(line, {k: _plain(v) for k, v in rec.items()}) for line, rec in rows]


def _id_text(value) -> str | None:
    if value is None or isinstance(value, bool) or isinstance(value, (dict, list)):
        return None
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else None
    return str(value).strip() or None


def pool_files(path: Path) -> list[Path]:
    """A file, or a folder's *.jsonl, *.csv and *.parquet files (sorted, not recursive)."""
    if path.is_dir():
        files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in (".jsonl", ".csv", ".parquet"))
        if not files:
            raise AnnotateError(f"{path}: a folder without *.jsonl, *.csv or *.parquet files")
        return files
    return [path]


def read_pool(path: Path, id_column: str = "id", text_column: str = "text") -> Pool:
    """Every row of the pool, keyed by its id (unique, non-empty: exports and agreement refer to statements by id)."""
    path = Path(path)
    pool = Pool(path, text_column, [], [])
    for f in pool_files(path):
        columns, records = read_table(f)
        pool.columns += [c for c in columns if c not in pool.columns]
        for name in (id_column, text_column):
            if records and name not in columns:
                option = "--id-column" if name == id_column else "--text-column"
                raise AnnotateError(f"{f}: no {name!r} column (columns: {', '.join(columns)}); pass {option}")
        for line, rec in records:
            row = PoolRow("", f, line, rec)
            rid = _id_text(rec.get(id_column))
            if rid is None:
                raise AnnotateError(f"{row.where}: field {id_column!r}: empty or not an id ({rec.get(id_column)!r})")
            if rid in pool.by_id:
                raise AnnotateError(f"{row.where}: field {id_column!r}: duplicate id {rid!r} (also at {pool.by_id[rid].where})")
            text = rec.get(text_column)
            if not isinstance(text, str) or not text.strip():
                raise AnnotateError(f"{row.where}: field {text_column!r}: no text to label ({text!r})")
            row.id, row.values = rid, {**rec, id_column: rid}
            pool.rows.append(row)
            pool.by_id[rid] = row
    if not pool.rows:
        raise AnnotateError(f"{path}: no rows")
    return pool


@dataclass
class Order:
    """The statements one server presents, in order, with the reason each was chosen (may be empty)."""

    ids: list[str]
    reasons: dict[str, str]
    source: str  # "pool order" or the order file's path


def read_order(spec: str | Path | None, pool: Pool) -> Order:
    """`file` / None: the pool's own order. Otherwise a CSV/JSONL/Parquet file with an `id` column (the output of
    `stance select`, a disagreement list, a label-problems report) and optionally `reason`; every id must be in the pool."""
    if spec is None or str(spec) == "file":
        return Order([r.id for r in pool.rows], {}, "pool order")
    path = Path(spec)
    columns, records = read_table(path)
    if "id" not in columns:
        raise AnnotateError(f"{path}: no 'id' column (columns: {', '.join(columns)}); an order file lists ids to label")
    ids, reasons = [], {}
    for line, rec in records:
        rid = _id_text(rec.get("id"))
        if rid is None or rid not in pool.by_id:
            raise AnnotateError(f"{path}:{line}: field 'id': {rec.get('id')!r} is not an id of the pool {pool.path}")
        reason = "" if rec.get("reason") is None else str(rec["reason"])
        if rid in reasons:  # listed twice (e.g. two problems in a report): presented once, with both reasons
            reasons[rid] = "; ".join(r for r in (reasons[rid], reason) if r)
            continue
        ids.append(rid)
        reasons[rid] = reason
    if not ids:
        raise AnnotateError(f"{path}: no ids to label")
    return Order(ids, reasons, str(path))
