"""Reading input files for batch prediction: formats, encodings, column names, content digests, chunks of rows."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from pathlib import Path

from train.inference.rows import InferenceError

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}

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
        raise InferenceError(
            f"{path}: duplicate column names {', '.join(map(repr, dupes))}; rename them so each column has one name"
        )
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
    where = (
        f"byte 0x{e.object[e.start]:02x} at offset {offset + at}, line {line}"
        if e.start < len(e.object)
        else "truncated at the end"
    )
    with open(path, "rb") as fh:
        utf16 = fh.read(2) in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
    hint = (
        "it starts with a UTF-16 byte-order mark: pass --encoding utf-16"
        if utf16
        else "pass --encoding with the file's encoding, e.g. --encoding latin-1, cp1252 or utf-16"
    )
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
                    raise InferenceError(
                        f"{path}: a UTF-16 file; JSON Lines must be UTF-8 (convert it, e.g. iconv -f utf-16 -t utf-8)"
                    )
                raw = raw.removeprefix(codecs.BOM_UTF8)
            if raw.strip():
                yield lineno, *parse_json_line(raw)


def to_pandas(table):
    """An Arrow table as pandas with nullable integer and boolean dtypes: plain to_pandas() turns an integer column
    holding one null into float64 (tweet id 1790000000000000123 -> 1.79e+18)."""
    import pandas as pd
    import pyarrow as pa

    nullable = {
        pa.int8(): pd.Int8Dtype(),
        pa.int16(): pd.Int16Dtype(),
        pa.int32(): pd.Int32Dtype(),
        pa.int64(): pd.Int64Dtype(),
        pa.uint8(): pd.UInt8Dtype(),
        pa.uint16(): pd.UInt16Dtype(),
        pa.uint32(): pd.UInt32Dtype(),
        pa.uint64(): pd.UInt64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
    }
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
        table = table.set_column(
            i, f.name, pa.array([None if v is None else v.decode("utf-8", "replace") for v in values], f.type)
        )
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
                    errs.append(
                        None
                        if len(values) == len(header)
                        else f"line {line}: wrong number of fields ({len(values)}, the header has {len(header)})"
                    )
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
