"""Batch inference: raw values -> prediction frame (shared with the MLflow pyfunc), and files -> files in chunks.

`predict_values` is the one function that turns a list of raw cell values into the prediction columns, bad rows
included: the CLI, the pyfunc, the model server and the Spark UDF all go through it, so they agree row for row.

`predict_file` streams a CSV / JSONL / Parquet file in fixed-size chunks (memory is bounded by the chunk size, not the
file size). Each finished chunk is written atomically as a numbered Parquet part in `<output>.parts/` next to a
manifest, so a run killed at any point (even SIGKILL) resumes without recomputing finished chunks; at the end the parts
are joined into the output (temp file + os.replace) and the work directory is removed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
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


def input_columns(path: Path, fmt: str) -> list[str]:
    """Column names from the header / schema / first records, without reading the data."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if fmt == "csv":
        import pandas as pd

        return list(pd.read_csv(path, nrows=0).columns)
    names: dict[str, None] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh):
            if n >= 1000:
                break
            try:
                rec = json.loads(line) if line.strip() else None
            except ValueError:
                continue
            if isinstance(rec, dict):
                names.update(dict.fromkeys(rec))
    return list(names)


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


def iter_chunks(path: Path, fmt: str, rows: int):
    """(DataFrame, read errors or None) per chunk of exactly `rows` rows (the last may be shorter), in file order.
    Fixed chunk boundaries are what make part files resumable."""
    import pandas as pd

    if fmt == "csv":
        # every column as text: identical values out as in, and the same schema in every chunk
        for df in pd.read_csv(path, chunksize=rows, dtype=str, keep_default_na=False, na_values=[""]):
            yield df.reset_index(drop=True), None
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        buf, have = [], 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            buf.append(batch)
            have += batch.num_rows
            while have >= rows:
                table = pa.Table.from_batches(buf)
                yield table.slice(0, rows).to_pandas(), None
                rest = table.slice(rows)
                buf, have = rest.to_batches(), rest.num_rows
        if have:
            yield pa.Table.from_batches(buf).to_pandas(), None
    else:
        # parsed line by line (not pd.read_json) so that one malformed line becomes one bad row instead of a crash,
        # and values keep their JSON types (read_json would turn "date"-like columns into timestamps)
        recs, errs = [], []
        with open(path, encoding="utf-8", errors="replace") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    err = None if isinstance(rec, dict) else f"line {lineno}: not a JSON object"
                except ValueError as e:
                    rec, err = None, f"line {lineno}: invalid JSON ({e})"
                recs.append(rec if err is None else {})
                errs.append(err)
                if len(recs) == rows:
                    yield pd.DataFrame.from_records(recs), errs
                    recs, errs = [], []
        if recs:
            yield pd.DataFrame.from_records(recs), errs


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
                    df = pq.read_table(p).to_pandas().reindex(columns=columns)
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

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def parts_dir_for(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def _manifest(input_path: Path, model_uri: str, chunk_rows: int, text_column: str, detect: bool) -> dict:
    st = input_path.stat()
    return {"input": {"path": str(input_path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns},
            "model_uri": model_uri, "chunk_rows": chunk_rows, "text_column": text_column, "detect_language": detect}


def prepare_work_dir(output: Path, manifest: dict, resume: bool, overwrite: bool) -> Path:
    work = parts_dir_for(output)
    if work.exists():
        if overwrite:
            shutil.rmtree(work)
        elif not resume:
            raise InferenceError(f"{work} exists (an unfinished run); pass --resume to continue it or --overwrite to start over")
        else:
            try:
                old = json.loads((work / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = None
            if old != manifest:
                diff = sorted(k for k in manifest if (old or {}).get(k) != manifest[k]) if old else ["manifest missing or unreadable"]
                raise InferenceError(f"{work}: cannot resume, the unfinished run differs in: {', '.join(diff)}; use --overwrite to start over")
            return work
    work.mkdir(parents=True)
    tmp = work / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    os.replace(tmp, work / MANIFEST)
    return work


def predict_file(model, input_path, output_path, text_column: str = "text", *, model_uri: str = "", model_version: str = "",
                 batch_size: int = 64, chunk_rows: int = 5000, detect_language: bool | None = None, resume: bool = False,
                 overwrite: bool = False, progress=None) -> PredictSummary:
    """Predict every row of `input_path` into `output_path` (formats from the extensions); see the module docstring.

    detect_language: None = only when the input has no language column. `progress(done_rows, summary)` is called after
    every chunk.
    """
    import pyarrow.parquet as pq

    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.is_file():
        raise InferenceError(f"{input_path}: input file not found")
    in_fmt, out_fmt = file_format(input_path, "input"), file_format(output_path, "output")
    if chunk_rows < 1 or batch_size < 1:
        raise InferenceError("--chunk-size and --batch-size must be positive")
    columns = input_columns(input_path, in_fmt)
    if text_column not in columns:
        raise InferenceError(f"{input_path}: no column {text_column!r}; available columns: {', '.join(map(str, columns)) or '(none)'}"
                             " (choose one with --text-column)")
    has_language = any(c in columns for c in LANGUAGE_COLUMNS)
    detect = (not has_language) if detect_language is None else detect_language
    output_path.parent.mkdir(parents=True, exist_ok=True)
    work = prepare_work_dir(output_path, _manifest(input_path, model_uri, chunk_rows, text_column, detect), resume, overwrite)

    summary, start = PredictSummary(), time.perf_counter()
    delay = float(os.environ.get(CHUNK_DELAY_ENV, "0") or 0)
    parts = []
    for k, (df, read_errors) in enumerate(iter_chunks(input_path, in_fmt, chunk_rows)):
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
    shutil.rmtree(work)
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
