"""Writing prediction parts and joining them into the output file (Parquet, CSV, JSON Lines), atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from train.inference.readers import to_pandas
from train.inference.rows import PRED_COLUMNS, PROB_DECIMALS

# -- writing -------------------------------------------------------------------------------------------------------------


def to_arrow(df):
    """A chunk as an Arrow table; object columns mixing types (e.g. 123 among strings) are stored as text."""
    import pyarrow as pa

    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        df = df.copy()
        for col in df.columns:
            try:
                pa.array(df[col], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
                df[col] = [
                    None
                    if v is None or (isinstance(v, float) and math.isnan(v))
                    else v
                    if isinstance(v, str)
                    else json.dumps(v, ensure_ascii=False, default=str)
                    for v in df[col]
                ]
        return pa.Table.from_pandas(df, preserve_index=False)


def _write_atomic_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(path.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def _unified_schema(schemas):
    """One schema for all parts: a column's type where parts agree, float64 for int/float mixes, otherwise text."""
    import pyarrow as pa

    types: dict[str, set] = {}
    for schema in schemas:
        for f in schema:
            if not pa.types.is_null(f.type):
                types.setdefault(f.name, set()).add(f.type)
            else:
                types.setdefault(f.name, set())
    fields = []
    for name, ts in types.items():
        if len(ts) == 1:
            t = next(iter(ts))
        elif not ts:
            t = pa.string()
        elif all(pa.types.is_integer(t) or pa.types.is_floating(t) for t in ts):
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(name, t))
    return pa.schema(fields)


def _conform(table, schema):
    import pyarrow as pa

    cols = []
    for f in schema:
        if f.name not in table.column_names:
            cols.append(pa.nulls(table.num_rows, f.type))
            continue
        col = table.column(f.name)
        if col.type != f.type:
            try:
                col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                col = pa.array(
                    [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in col.to_pylist()], f.type
                )
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _nested_as_json(table):
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_nested(f.type):
            values = [None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, f.name, pa.array(values, pa.string()))
    return table


def join_parts(parts: list[Path], output: Path, fmt: str) -> None:
    """Concatenate the part files into `output` (temp file + os.replace), one part in memory at a time."""
    import pyarrow.parquet as pq

    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        if fmt == "parquet":
            schema = _unified_schema(pq.read_schema(p) for p in parts)
            with pq.ParquetWriter(tmp, schema) as writer:
                for p in parts:
                    writer.write_table(_conform(pq.read_table(p), schema))
        else:
            columns = list(_unified_schema(pq.read_schema(p) for p in parts).names)
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                for k, p in enumerate(parts):
                    table = pq.read_table(p)
                    if fmt == "csv":  # lists and structs as JSON text, not numpy reprs like "[array([1])]"
                        table = _nested_as_json(table)
                    df = to_pandas(table).reindex(columns=columns)
                    probs = [c for c in PRED_COLUMNS[1:] if c in df.columns and df[c].dtype.kind == "f"]
                    df[probs] = df[probs].round(PROB_DECIMALS)  # text formats: 6 decimals, not float32 noise (Parquet: exact)
                    if fmt == "csv":
                        df.to_csv(fh, index=False, header=k == 0)
                    else:
                        text = df.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
                        fh.write(text if text.endswith("\n") or not text else text + "\n")
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()
