"""Reading `stance predict` output in chunks into per-group arrays of probabilities.

Only the columns analyze needs are read (the group columns, the time column, the three probabilities and
pred_error); for every group x period it keeps one float32 array of the scored rows' probabilities (12 bytes per
row: what the bootstrap resamples) and a count of the unscored rows. A million rows take about 12 MB plus one
chunk of the file (`chunk_rows`, 50,000 by default) as pandas: no per-row Python objects are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train.inference.readers import file_format, input_columns, iter_chunks
from train.inference.rows import InferenceError
from train.schema import LABELS

PROB_COLUMNS = [f"prob_{label}" for label in LABELS]
MISSING = "(missing)"  # the group value of rows with an empty group column or date: kept and shown, never dropped
FREQS = {"D": "D", "W": "W", "M": "M"}


class FindingsError(ValueError):
    """A problem with an input file or option: the message names the file, the row and the column."""


@dataclass
class Collected:
    keys: list[str]  # group columns (+ "period")
    groups: dict[tuple, list] = field(default_factory=dict)  # key -> list of float32 (rows x 3) arrays
    unscored: dict[tuple, int] = field(default_factory=dict)
    rows: int = 0
    model_uri: str = ""

    def proba(self, key) -> np.ndarray:
        parts = self.groups.get(key, [])
        return np.concatenate(parts) if parts else np.zeros((0, len(LABELS)), dtype=np.float32)

    def all_keys(self) -> list[tuple]:
        return sorted(set(self.groups) | set(self.unscored), key=lambda k: tuple(str(v) for v in k))


def _check_columns(path: Path, have: list[str], need: list[str], what: str) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise FindingsError(
            f"{path}: no column {', '.join(map(repr, missing))} ({what}); the file has: {', '.join(map(str, have))}"
        )


def _period(values, path: Path, first_row: int, column: str, freq: str) -> np.ndarray:
    """Period labels (2025-07-14 for a day, 2025-W29 style week start 2025-07-14/2025-07-20, 2025-07 for a month)."""
    import pandas as pd

    raw = pd.Series(values, dtype=object)
    empty = raw.isna() | (raw.astype(str).str.strip() == "")
    t = pd.to_datetime(raw.where(~empty), errors="coerce", utc=True, format="mixed")
    bad = (~empty) & t.isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FindingsError(f"{path}: row {first_row + i + 1}: column {column!r}: {raw.iloc[i]!r} is not a date or time")
    out = t.dt.tz_localize(None).dt.to_period(FREQS[freq]).astype(str).to_numpy(dtype=object)
    out[empty.to_numpy()] = MISSING
    return out


def collect(path: Path, by: list[str], time: str | None = None, freq: str = "W", chunk_rows: int = 50_000) -> Collected:
    """Stream the predictions file and group the scored rows' probabilities by `by` (+ period of `time`)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FindingsError(f"{path}: no such file")
    if freq not in FREQS:
        raise FindingsError(f"--freq: {freq!r} is not one of {', '.join(FREQS)}")
    try:
        fmt = file_format(path, "predictions")
        have = input_columns(path, fmt)
    except InferenceError as e:
        raise FindingsError(str(e)) from None
    _check_columns(path, have, PROB_COLUMNS, "the probabilities `stance predict` writes; is this its output?")
    _check_columns(path, have, by, "--by")
    if time:
        _check_columns(path, have, [time], "--time")
    keys = list(by) + (["period"] if time else [])
    out = Collected(keys)
    wanted = list(dict.fromkeys(by + ([time] if time else []) + PROB_COLUMNS + ["model_uri"]))
    for chunk in _read_chunks(path, fmt, [c for c in wanted if c in have], chunk_rows):
        n = len(chunk)
        cols = [chunk[c].astype(object).where(chunk[c].notna(), MISSING).astype(str).to_numpy() for c in by]
        if time:
            cols.append(_period(chunk[time].to_numpy(dtype=object), path, out.rows, time, freq))
        probs = np.column_stack([pd.to_numeric(chunk[c], errors="coerce").to_numpy(dtype=np.float32) for c in PROB_COLUMNS])
        scored = ~np.isnan(probs).any(1)
        if not out.model_uri and "model_uri" in chunk:
            uris = chunk["model_uri"].dropna()
            out.model_uri = str(uris.iloc[0]) if len(uris) else ""
        # one integer code per distinct key in the chunk: grouping without per-row tuples
        frame = pd.DataFrame({i: c for i, c in enumerate(cols)}) if cols else pd.DataFrame(index=range(n))
        codes, uniques = pd.MultiIndex.from_frame(frame).factorize() if cols else (np.zeros(n, dtype=np.int64), [()])
        for code, key in enumerate(uniques):
            key = key if isinstance(key, tuple) else (key,)
            member = codes == code
            ok = member & scored
            if ok.any():
                out.groups.setdefault(key, []).append(probs[ok].copy())
            bad = int((member & ~scored).sum())
            if bad or key not in out.unscored:
                out.unscored[key] = out.unscored.get(key, 0) + bad
        out.rows += n
    return out


def _read_chunks(path: Path, fmt: str, columns: list[str], rows: int):
    """_chunks, with a file that breaks part-way through reported as one error naming it (not a traceback)."""
    import pandas as pd
    import pyarrow as pa

    done = 0
    try:
        for chunk in _chunks(path, fmt, columns, rows):
            done += len(chunk)
            yield chunk
    except (pa.ArrowException, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise FindingsError(f"{path}: unreadable after row {done} ({e})") from None


def _chunks(path: Path, fmt: str, columns: list[str], rows: int):
    """DataFrames of at most `rows` rows holding only `columns`."""
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from train.inference.readers import to_pandas

        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=columns):
            yield to_pandas(pa.Table.from_batches([batch]))
    elif fmt == "csv":
        import pandas as pd

        yield from pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False, na_values=[""], chunksize=rows)
    else:
        try:
            for frame, _errors in iter_chunks(path, fmt, rows):
                yield frame.reindex(columns=columns)
        except InferenceError as e:
            raise FindingsError(str(e)) from None
