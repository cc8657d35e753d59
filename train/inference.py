"""Batch inference: raw values -> prediction frame (shared with the MLflow pyfunc), and files -> files in chunks.

`predict_values` is the one function that turns a list of raw cell values into the prediction columns, bad rows
included: the CLI, the pyfunc, the model server and the Spark UDF all go through it, so they agree row for row.

`predict_file` streams a CSV / JSONL / Parquet file in fixed-size chunks (memory is bounded by the chunk size, not the
file size). Each finished chunk is written atomically as a numbered Parquet part in `<output>.parts/` next to a
manifest, so a run killed at any point (even SIGKILL) resumes without recomputing finished chunks; at the end the parts
are joined into the output (temp file + os.replace) and the work directory is removed. The work directory belongs to
one process at a time (an flock), and parts are resumed only for the same input content, model and options.

What is kept with a reason, what is refused and the exit codes: docs/input-contract.md.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import re
import shutil
import socket
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.schema import LABELS

PRED_COLUMNS = ["pred_stance", "pred_confidence"] + [f"prob_{name}" for name in LABELS]
OUTPUT_COLUMNS = PRED_COLUMNS + ["pred_error"]


def output_frame(proba: np.ndarray, labels=LABELS, errors=None):
    """OUTPUT_COLUMNS for a probability matrix. Rows holding NaN (bad rows) get empty predictions; `errors` gives
    each row's reason ("" / None when the row is fine)."""
    import pandas as pd

    proba = np.asarray(proba, dtype=np.float64).reshape(-1, len(labels))
    ok = ~np.isnan(proba).any(1)
    best = np.where(ok, np.nan_to_num(proba, nan=-1.0).argmax(1), 0)
    out = pd.DataFrame({
        "pred_stance": pd.Series([labels[i] if good else None for i, good in zip(best, ok)], dtype=object),
        "pred_confidence": np.where(ok, np.nan_to_num(proba, nan=0.0).max(1), np.nan),
    })
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = proba[:, i]
    errors = [""] * len(proba) if errors is None else ["" if e is None else str(e) for e in errors]
    out["pred_error"] = pd.Series(errors, dtype=object)
    return out


MAX_CHARS = 20000  # longer values are not statements (whole articles, dumps) and would only be truncated
MAX_TOKENS_FACTOR = 4  # ... nor are values tokenizing to more than 4x the model's max_length
LANGUAGE_COLUMNS = ("language", "lang")
DETECT_LANGUAGES = ("en", "ru", "tr", "az", "uk", "de", "fr", "es", "pl", "ka", "kk", "ar", "fa", "hy", "it", "pt", "be", "zh")  # labeled/ languages lingua knows (not uz)
RUN_COLUMNS = ["detected_language", "model_uri", "model_version"]
FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}
MANIFEST = "manifest.json"
CHUNK_DELAY_ENV = "STANCE_PREDICT_CHUNK_DELAY"  # seconds to sleep per chunk: lets tests kill a run half-way


class InferenceError(Exception):
    """A problem with the user's input or options, reported before any work is done (exit code 2)."""


# -- rows -> predictions ---------------------------------------------------------------------------------------------

def row_problem(value, max_chars: int = MAX_CHARS) -> str | None:
    """Why a cell cannot be classified, or None when it is a usable statement."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ in ("NAType", "NaTType"):
        return "missing text"
    if not isinstance(value, str):
        return f"not text ({type(value).__name__})"
    if not value.strip():
        return "empty text"
    if len(value) > max_chars:
        return f"text too long ({len(value)} chars > {max_chars})"
    if not any(ch.isalpha() or unicodedata.category(ch) == "So" for ch in value):
        return "no letters (not a statement)"  # digits/punctuation only; emoji-only posts do carry stance
    return None


def _token_problems(model, texts: dict[int, str]) -> dict[int, str]:
    """Values tokenizing far past the model's max_length. Only values long enough to possibly exceed the limit are
    tokenized again (a subword token covers at least half a character), so ordinary rows cost nothing extra."""
    tokenizer, max_length = getattr(model, "tokenizer", None), getattr(model, "max_length", None)
    if tokenizer is None or not max_length:
        return {}
    limit = MAX_TOKENS_FACTOR * max_length
    long = {i: t for i, t in texts.items() if 2 * len(t) + 2 > limit}
    if not long:
        return {}
    lengths = [len(ids) for ids in tokenizer(list(long.values()), truncation=False)["input_ids"]]
    return {i: f"text too long ({n} tokens > {MAX_TOKENS_FACTOR}x max_length {max_length})" for i, n in zip(long, lengths) if n > limit}


def predict_values(model, values, batch_size: int = 64, errors: list | None = None, max_chars: int = MAX_CHARS):
    """Prediction frame (PRED_COLUMNS + pred_error) for raw cell values, one row per value in the same order.

    `errors` carries problems found while reading (e.g. an unparsable JSON line). Bad rows get empty predictions and
    the reason in pred_error; they never raise and are never dropped.
    """
    values = list(values)
    problems = list(errors) if errors is not None else [None] * len(values)
    for i, v in enumerate(values):
        if problems[i] is None:
            problems[i] = row_problem(v, max_chars)
    good = {i: values[i] for i, p in enumerate(problems) if p is None}
    for i, reason in _token_problems(model, good).items():
        problems[i] = reason
        del good[i]
    proba = np.full((len(values), len(model.labels)), np.nan, dtype=np.float32)
    if good:
        idx = list(good)
        try:
            proba[idx] = model.predict_proba([good[i] for i in idx], batch_size=batch_size)
        except Exception:  # noqa: BLE001 - one poisonous row must not sink its chunk: retry row by row
            for i in idx:
                try:
                    proba[i] = model.predict_proba([good[i]], batch_size=1)[0]
                except Exception as e:  # noqa: BLE001
                    problems[i] = f"model error: {type(e).__name__}: {e}"[:500]
    return output_frame(proba, model.labels, problems)


# -- language detection ------------------------------------------------------------------------------------------------

_DETECTOR = None


def detect_languages(values) -> list[str | None]:
    """ISO 639-1 codes from lingua (restricted to the languages this project meets), None where undecidable.
    Uses lingua's multi-threaded batch API; non-text and empty values get None."""
    global _DETECTOR
    from lingua import IsoCode639_1, LanguageDetectorBuilder

    if _DETECTOR is None:
        codes = [getattr(IsoCode639_1, c.upper()) for c in DETECT_LANGUAGES]
        _DETECTOR = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()  # models load lazily, per script seen
    values = list(values)
    idx = [i for i, v in enumerate(values) if isinstance(v, str) and v.strip() and len(v) <= MAX_CHARS]
    out: list[str | None] = [None] * len(values)
    for i, lang in zip(idx, _DETECTOR.detect_languages_in_parallel_of([values[i] for i in idx])):
        out[i] = lang.iso_code_639_1.name.lower() if lang is not None else None
    return out


# -- reading -------------------------------------------------------------------------------------------------------------

def file_format(path: Path, role: str) -> str:
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise InferenceError(f"{path}: unknown {role} format {Path(path).suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    return fmt


def _text_encoding(encoding: str) -> str:
    """The codec to open a CSV with: utf-8 also accepts a byte-order mark (Excel writes one)."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InferenceError(f"--encoding: unknown encoding {encoding!r} (e.g. utf-8, latin-1, cp1252, utf-16)") from None
    return "utf-8-sig" if name == "utf-8" else encoding


def _csv_reader(fh):
    # fields up to 64 MiB (the default 128 KiB limit would stop on one pasted article; such rows get "text too long")
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))
    return csv.reader(fh)


def _csv_header(path: Path, encoding: str) -> list[str]:
    with open(path, encoding=_text_encoding(encoding), newline="") as fh:
        header = next(_csv_reader(fh), None)
    if header is None:
        raise InferenceError(f"{path}: empty file (a CSV needs a header row)")
    return [h or f"Unnamed: {i}" for i, h in enumerate(header)]  # pandas' name for a blank header (a saved index)


def input_columns(path: Path, fmt: str, encoding: str = "utf-8") -> list[str]:
    """Column names from the header / schema / first records, without reading the data. Whole-file problems (not the
    format the extension says, empty, duplicate column names) raise InferenceError."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            names = list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as e:
            raise InferenceError(f"{path}: not a readable Parquet file ({e})") from None
    elif fmt == "csv":
        try:
            names = _csv_header(path, encoding)
        except UnicodeDecodeError:
            scan_input(path, fmt, encoding)  # raises the error with its position and an --encoding hint
            names = []
        except csv.Error as e:
            raise InferenceError(f"{path}: line 1: unreadable CSV header ({e})") from None
    else:
        names = {}
        for n, (_, rec, _) in enumerate(jsonl_records(path)):
            if n >= 1000:
                break
            names.update(dict.fromkeys(rec or {}))
        names = list(names)
    dupes = sorted({str(c) for c in names if names.count(c) > 1})
    if dupes:
        raise InferenceError(f"{path}: duplicate column names {', '.join(map(repr, dupes))}; rename them so each column has one name")
    return names


def scan_input(path: Path, fmt: str, encoding: str = "utf-8") -> str:
    """The input's content sha256 (resumed parts are bound to it), in one sequential pass that also checks that a CSV
    decodes with `encoding`: a wrong encoding is a whole-file error before any work, not a crash half-way."""
    h = hashlib.sha256()
    decoder = codecs.getincrementaldecoder(_text_encoding(encoding))() if fmt == "csv" else None
    offset = lines = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
            if decoder is not None:
                try:
                    decoder.decode(block)
                except UnicodeDecodeError as e:
                    _encoding_error(path, encoding, block, e, offset, lines)
            offset += len(block)
            lines += block.count(b"\n")
    if decoder is not None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            _encoding_error(path, encoding, b"", e, offset, lines)
    return h.hexdigest()


def _encoding_error(path, encoding, block, e, offset, lines):
    at = max(0, e.start - (len(e.object) - len(block)))  # the decoder may hold bytes of the previous block
    line = lines + block[:at].count(b"\n") + 1
    where = f"byte 0x{e.object[e.start]:02x} at offset {offset + at}, line {line}" if e.start < len(e.object) else "truncated at the end"
    with open(path, "rb") as fh:
        utf16 = fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    hint = "it starts with a UTF-16 byte-order mark: pass --encoding utf-16" if utf16 else \
        "pass --encoding with the file's encoding, e.g. --encoding latin-1, cp1252 or utf-16"
    raise InferenceError(f"{path}: cannot decode as {encoding} ({where}); {hint}")


def count_rows(path: Path, fmt: str) -> int | None:
    """Rows for the progress bar: exact for Parquet and JSONL, an upper bound for CSV (quoted newlines)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    n += last != b"\n"
    return max(0, n - 1) if fmt == "csv" else n


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogates(v):
    """Lone surrogates (a JSON "\\ud83d" without its pair: an emoji cut in half by a scraper) cannot be stored as
    UTF-8; they are kept as their six-character escape text."""
    if isinstance(v, str):
        return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", v)
    if isinstance(v, list):
        return [_escape_surrogates(x) for x in v]
    if isinstance(v, dict):
        return {_escape_surrogates(k): _escape_surrogates(x) for k, x in v.items()}
    return v


MAX_JSON_DEPTH = 64  # Parquet parts cannot hold values nested past ~100 levels; real records are a few levels deep


def _deeper_than(value, limit: int) -> bool:
    level = [value]  # breadth first: no recursion, whatever the depth
    for _ in range(limit):
        level = [x for v in level for x in (v.values() if isinstance(v, dict) else v if isinstance(v, list) else ())]
        if not level:
            return False
    return True


def parse_json_line(raw: bytes) -> tuple[dict | None, str | None]:
    """(record, problem) for one JSONL line. A row whose bytes are not UTF-8 or that holds a lone surrogate keeps its
    other values (bad bytes become U+FFFD, surrogates their escape text) but carries the problem, so it is not scored."""
    problem = None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        text = raw.decode("utf-8", errors="replace")
        problem = f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line; not scored)"
    try:
        rec = json.loads(text)
    except RecursionError:
        return None, f"invalid JSON (nested too deeply: over {MAX_JSON_DEPTH} levels)"
    except ValueError as e:
        return None, problem or f"invalid JSON ({e})"
    if not isinstance(rec, dict):
        return None, problem or "not a JSON object"
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _deeper_than(rec, MAX_JSON_DEPTH):
        return None, f"invalid JSON (nested too deeply: over {MAX_JSON_DEPTH} levels)"
    if b"\\u" in raw and (fixed := _escape_surrogates(rec)) != rec:
        fields = [k for k in rec if _escape_surrogates(rec[k]) != rec[k]] or ["(a key)"]
        return fixed, problem or f"lone surrogate (half an emoji) in {', '.join(map(str, fields))}; not valid Unicode, not scored"
    return rec, problem


def jsonl_records(path: Path):
    """(line number, record or None, problem or None) for every non-blank line. Read as bytes and decoded line by
    line: one bad line is one bad row, wherever it is; a UTF-8 byte-order mark is accepted."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if lineno == 1:
                if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
                    raise InferenceError(f"{path}: a UTF-16 file; JSON Lines must be UTF-8 (convert it, e.g. iconv -f utf-16 -t utf-8)")
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if raw.strip():
                yield lineno, *parse_json_line(raw)


def to_pandas(table):
    """An Arrow table as pandas with nullable integer and boolean dtypes: plain to_pandas() turns an integer column
    holding one null into float64 (tweet id 1790000000000000123 -> 1.79e+18)."""
    import pandas as pd
    import pyarrow as pa

    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype(),
                pa.uint8(): pd.UInt8Dtype(), pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(), pa.uint64(): pd.UInt64Dtype(),
                pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=nullable.get)


def _records_frame(recs: list[dict]):
    """Records as object columns (values as parsed: Arrow infers int64-with-nulls later, pandas would make floats)."""
    import pandas as pd

    columns = dict.fromkeys(k for r in recs for k in r)
    return pd.DataFrame({c: pd.Series([r.get(c) for r in recs], dtype=object) for c in columns}, index=range(len(recs)))


def _parquet_chunk(table):
    """(DataFrame, problems or None). Parquet writers need not validate UTF-8: a string column holding bad bytes
    gets them replaced by U+FFFD and a reason on those rows, as in JSONL, instead of failing the whole file."""
    import pyarrow as pa

    problems = None
    for i, f in enumerate(table.schema):
        if not (pa.types.is_string(f.type) or pa.types.is_large_string(f.type)):
            continue
        try:
            table.column(i).validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        binary = pa.large_binary() if pa.types.is_large_string(f.type) else pa.binary()
        values = [v for chunk in table.column(i).chunks for v in chunk.view(binary).to_pylist()]
        problems = problems or [None] * table.num_rows
        for row, v in enumerate(values):
            if v is not None and not problems[row] and v.decode("utf-8", "replace").encode() != v:
                problems[row] = f"invalid UTF-8 in column {f.name!r} (not scored)"
        table = table.set_column(i, f.name, pa.array([None if v is None else v.decode("utf-8", "replace") for v in values], f.type))
    return to_pandas(table), problems


def iter_chunks(path: Path, fmt: str, rows: int, encoding: str = "utf-8"):
    """(DataFrame, read errors or None) per chunk of exactly `rows` rows (the last may be shorter), in file order.
    Fixed chunk boundaries are what make part files resumable. A problem that makes the rest of the file unreadable
    raises InferenceError."""
    if fmt == "csv":
        # our own csv reader, not pd.read_csv: every value as text (identical out as in), and a row with the wrong
        # number of fields is one bad row with its line number instead of a crash
        header = _csv_header(path, encoding)
        recs, errs = [], []
        with open(path, encoding=_text_encoding(encoding), newline="") as fh:
            reader = _csv_reader(fh)
            next(reader)
            start = reader.line_num + 1
            try:
                for values in reader:
                    line, start = start, reader.line_num + 1
                    if not values:
                        continue  # blank line
                    errs.append(None if len(values) == len(header) else
                                f"line {line}: wrong number of fields ({len(values)}, the header has {len(header)})")
                    recs.append({h: v or None for h, v in zip(header, values)})
                    if len(recs) == rows:
                        yield _records_frame(recs), errs
                        recs, errs = [], []
            except csv.Error as e:
                raise InferenceError(f"{path}: line {reader.line_num}: unreadable CSV ({e})") from None
        if recs:
            yield _records_frame(recs), errs
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf, have, done = [], 0, 0
        try:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
                buf.append(batch)
                have += batch.num_rows
                while have >= rows:
                    table = pa.Table.from_batches(buf)
                    yield _parquet_chunk(table.slice(0, rows))
                    rest, done = table.slice(rows), done + rows
                    buf, have = rest.to_batches(), rest.num_rows
        except (pa.ArrowException, OSError) as e:
            raise InferenceError(f"{path}: unreadable Parquet after row {done} ({e})") from None
        if have:
            yield _parquet_chunk(pa.Table.from_batches(buf))
    else:
        # parsed line by line (not pd.read_json) so that one malformed line becomes one bad row instead of a crash,
        # and values keep their JSON types (read_json would turn "date"-like columns into timestamps)
        recs, errs = [], []
        for lineno, rec, err in jsonl_records(path):
            recs.append(rec or {})
            errs.append(None if err is None else f"line {lineno}: {err}")
            if len(recs) == rows:
                yield _records_frame(recs), errs
                recs, errs = [], []
        if recs:
            yield _records_frame(recs), errs


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
                df[col] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else
                           v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for v in df[col]]
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
                col = pa.array([None if v is None else json.dumps(v, ensure_ascii=False, default=str) for v in col.to_pylist()], f.type)
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
                    if fmt == "csv":
                        df.to_csv(fh, index=False, header=k == 0)
                    else:
                        text = df.to_json(orient="records", lines=True, force_ascii=False, date_format="iso")
                        fh.write(text if text.endswith("\n") or not text else text + "\n")
        os.replace(tmp, output)
    finally:
        if tmp.exists():
            tmp.unlink()


# -- the file -> file run ----------------------------------------------------------------------------------------------

@dataclass
class PredictSummary:
    rows: int = 0
    bad_rows: int = 0
    chunks: int = 0
    chunks_computed: int = 0
    chunks_reused: int = 0
    seconds: float = 0.0
    labels: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # reason (without line numbers) -> count
    input_sha256: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def parts_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


LOCK = "lock"


def _busy(output: Path, fd: int) -> InferenceError:
    owner = os.pread(fd, 1000, 0).decode("utf-8", "replace").strip() or "pid unknown"
    return InferenceError(f"{output} is being written by another stance predict ({owner}); wait for it to finish or choose another --output")


class WorkLock:
    """Exclusive ownership of `<output>.parts/` for one run: flock on `<output>.parts/lock`.

    The kernel drops a flock when its process dies, however it dies (even SIGKILL), so a crashed run never leaves a
    stale lock: the next run just takes it. The file holds the owner's pid, host and start time for the error message.
    """

    def __init__(self, output: Path):
        import fcntl

        self.work = parts_dir_for(output)
        while True:
            try:
                self.work.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.work / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the owner removed the directory just now: try again
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                error = _busy(output, fd)
                os.close(fd)
                raise error from None
            try:  # the previous owner may have unlinked the file between our open and flock: then it guards nothing
                same = os.stat(self.work / LOCK).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}".encode())

    @staticmethod
    def check_free(output: Path) -> None:
        """Raise now if another run holds `output`, e.g. before loading a model (creates nothing; the lock itself is
        taken by predict_file). Its lock lasts microseconds: a run starting in that instant is refused, as one of two
        runs started together must be."""
        import fcntl

        try:
            fd = os.open(parts_dir_for(output) / LOCK, os.O_RDONLY)
        except OSError:
            return  # no work directory: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(output, fd) from None
        finally:
            os.close(fd)  # also unlocks

    def clear(self) -> None:
        """Remove everything in the work directory but the lock itself."""
        for p in self.work.iterdir():
            if p.name != LOCK:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()

    def release(self, remove: bool) -> None:
        """Unlock; with `remove`, delete the work directory first (while still holding the lock)."""
        if remove or not any(p.name != LOCK for p in self.work.iterdir()):  # nothing worth resuming: leave nothing
            self.clear()
            (self.work / LOCK).unlink()
            self.work.rmdir()
        os.close(self.fd)


def _manifest(input_path: Path, digest: str, model_uri: str, chunk_rows: int, text_column: str, detect: bool,
              encoding: str, options: dict) -> dict:
    # bound to the input's content, not its size and mtime: copies (cp -p, rsync -t) and rewrites keep both, and
    # the hash is one sequential read, negligible next to scoring the same rows
    return {"input": {"path": str(input_path.resolve()), "size": input_path.stat().st_size, "sha256": digest},
            "model_uri": model_uri, "chunk_rows": chunk_rows, "text_column": text_column, "detect_language": detect,
            "encoding": encoding, **options}


def prepare_work_dir(lock: WorkLock, manifest: dict, resume: bool, overwrite: bool) -> Path:
    """Check or start the manifest of the locked work directory."""
    work = lock.work
    unfinished = any(p.name != LOCK for p in work.iterdir())
    if unfinished and overwrite:
        lock.clear()
    elif unfinished and not resume:
        raise InferenceError(f"{work} exists (an unfinished run); pass --resume to continue it or --overwrite to start over")
    elif unfinished:
        try:
            old = json.loads((work / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            old = None
        if old != manifest:
            diff = sorted(k for k in {**manifest, **(old or {})} if (old or {}).get(k) != manifest.get(k)) if old else ["manifest missing or unreadable"]
            raise InferenceError(f"{work}: cannot resume, the unfinished run differs in: {', '.join(diff)}; use --overwrite to start over")
        return work
    tmp = work / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, work / MANIFEST)
    return work


def predict_file(model, input_path, output_path, text_column: str = "text", *, model_uri: str = "", model_version: str = "",
                 batch_size: int = 64, chunk_rows: int = 5000, detect_language: bool | None = None, resume: bool = False,
                 overwrite: bool = False, progress=None, encoding: str = "utf-8", options: dict | None = None) -> PredictSummary:
    """Predict every row of `input_path` into `output_path` (formats from the extensions); see the module docstring.

    detect_language: None = only when the input has no language column. `progress(done_rows, summary)` is called after
    every chunk. `encoding` applies to CSV input. `options`: whatever else changes predictions (backend, precision...);
    parts are only resumed under the same input content, model and options.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InferenceError(f"{input_path}: input file not found")
    in_fmt, out_fmt = file_format(input_path, "input"), file_format(output_path, "output")
    if chunk_rows < 1 or batch_size < 1:
        raise InferenceError("--chunk-size and --batch-size must be positive")
    if in_fmt != "csv" and codecs.lookup(_text_encoding(encoding)).name not in ("utf-8", "utf-8-sig"):
        why = "JSON Lines are always UTF-8" if in_fmt == "jsonl" else "Parquet is binary"
        raise InferenceError(f"--encoding applies to CSV input only ({input_path.name}: {why})")
    columns = input_columns(input_path, in_fmt, encoding)
    if not columns:
        raise InferenceError(f"{input_path}: empty file (no records, no columns): nothing to predict")
    if text_column not in columns:
        raise InferenceError(f"{input_path}: no column {text_column!r}; available columns: {', '.join(map(str, columns))}"
                             " (choose one with --text-column)")
    has_language = any(c in columns for c in LANGUAGE_COLUMNS)
    detect = (not has_language) if detect_language is None else detect_language
    output_path.parent.mkdir(parents=True, exist_ok=True)
    lock = WorkLock(output_path)  # from here on, this run alone owns <output>.parts/ (taken before the long hash pass)
    remove = False  # kept on a refused resume (the parts are another run's) and on interruption (they resume)
    try:
        digest = scan_input(input_path, in_fmt, encoding)
        manifest = _manifest(input_path, digest, model_uri, chunk_rows, text_column, detect, encoding, options or {})
        work = prepare_work_dir(lock, manifest, resume, overwrite)
        try:
            summary = _predict_chunks(model, input_path, in_fmt, output_path, out_fmt, work, columns, text_column, model_uri,
                                      model_version, batch_size, chunk_rows, detect, progress, encoding)
        except InferenceError:
            remove = True  # the input is unreadable past some point: its finished parts are worth nothing
            raise
        remove = True
    finally:
        lock.release(remove)
    summary.input_sha256 = digest
    return summary


def _predict_chunks(model, input_path, in_fmt, output_path, out_fmt, work, columns, text_column, model_uri, model_version,
                    batch_size, chunk_rows, detect, progress, encoding) -> PredictSummary:
    import pyarrow.parquet as pq

    summary, start = PredictSummary(), time.perf_counter()
    delay = float(os.environ.get(CHUNK_DELAY_ENV, "0") or 0)
    parts = []
    for k, (df, read_errors) in enumerate(iter_chunks(input_path, in_fmt, chunk_rows, encoding)):
        part = work / f"part-{k:06d}.parquet"
        parts.append(part)
        if part.exists():  # finished by an earlier, interrupted run
            table = pq.read_table(part, columns=["pred_stance", "pred_error"])
            summary.chunks_reused += 1
            count_predictions(summary, table.column("pred_stance").to_pylist(), table.column("pred_error").to_pylist())
        else:
            if text_column not in df.columns:  # JSONL chunks whose records all lack the key
                df[text_column] = None
            preds = predict_values(model, df[text_column].tolist(), batch_size, read_errors)
            out = df.drop(columns=[c for c in [*preds.columns, *RUN_COLUMNS] if c in df.columns])
            for col in preds.columns:
                out[col] = preds[col].to_numpy()
            if detect:
                out["detected_language"] = detect_languages(df[text_column].tolist())
            out["model_uri"] = model_uri
            out["model_version"] = model_version
            _write_atomic_parquet(to_arrow(out), part)
            summary.chunks_computed += 1
            count_predictions(summary, preds["pred_stance"].tolist(), preds["pred_error"].tolist())
            if delay:
                time.sleep(delay)
        summary.chunks = k + 1
        summary.seconds = time.perf_counter() - start
        if progress is not None:
            progress(summary.rows, summary)
    if not parts:  # an empty input still gives an output with the input's columns
        import pandas as pd

        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
        preds = predict_values(model, [], batch_size)
        for col in [*preds.columns, *(RUN_COLUMNS if detect else RUN_COLUMNS[1:])]:
            empty[col] = pd.Series(dtype="float64" if col.startswith(("prob_", "pred_conf")) else object)
        parts.append(work / "part-000000.parquet")
        _write_atomic_parquet(to_arrow(empty), parts[0])
    join_parts(parts, output_path, out_fmt)
    summary.seconds = time.perf_counter() - start
    return summary


def count_predictions(summary: PredictSummary, stances, errors) -> None:
    summary.rows += len(stances)
    for s, e in zip(stances, errors):
        if e:
            summary.bad_rows += 1
            reason = e.split(": ", 1)[1] if e.startswith("line ") else e
            reason = reason.split(" (")[0]
            summary.errors[reason] = summary.errors.get(reason, 0) + 1
        elif s is not None:
            summary.labels[s] = summary.labels.get(s, 0) + 1


__all__ = ["output_frame", "OUTPUT_COLUMNS", "predict_values", "predict_file", "detect_languages", "row_problem", "InferenceError", "PredictSummary", "PRED_COLUMNS"]
