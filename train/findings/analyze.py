"""`stance analyze` top to bottom: labeled rows for the correction, the grouped predictions, one table row per
group x period x stance, then the files a paper needs (train.findings.outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.findings.collect import PROB_COLUMNS, Collected, FindingsError, collect
from train.findings.quantify import SMALL_GROUP, Correction, estimate_group
from train.inference.rows import InferenceError
from train.inference.tables import read_rows, where
from train.schema import LABELS


def read_labeled(path: Path):
    """A labeled file (CSV / JSONL / Parquet, read by train.inference.tables.read_rows) as a DataFrame indexed by each
    row's file line (Parquet: row number), named "line"; it must have `stance` (and the prob_* columns unless analyze
    scores it itself). A malformed line, an unknown label or an empty stance is an error naming the line."""
    import pandas as pd

    try:
        columns, rows = read_rows(path, "labeled file")
    except InferenceError as e:
        raise FindingsError(str(e)) from None
    df = pd.DataFrame([rec for _, rec in rows], columns=columns, index=pd.Index([line for line, _ in rows], name="line"))
    if "stance" not in df.columns:
        raise FindingsError(
            f"{path}: no column 'stance' (the true label of each row); the file has: {', '.join(map(str, df.columns))}"
        )
    bad = np.flatnonzero(~df["stance"].isin(LABELS).to_numpy())
    if len(bad):
        line, value = df.index[bad[0]], df["stance"].iloc[bad[0]]
        raise FindingsError(f"{where(path, line)}: column 'stance': {value!r} is not one of {', '.join(LABELS)}")
    return df


def validation_arrays(df, path) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, class indices) of a scored labeled file (rows named by the "line" index of read_labeled, else
    by their 1-based position)."""
    import pandas as pd

    missing = [c for c in PROB_COLUMNS if c not in df.columns]
    if missing:
        raise FindingsError(f"{path}: no column {', '.join(map(repr, missing))}: score it first (or pass --model to analyze)")
    raw = df[PROB_COLUMNS]
    proba = raw.apply(lambda col: pd.to_numeric(col, errors="coerce")).to_numpy(dtype=np.float64)  # CSV cells are text
    if np.isnan(proba).any():
        i = int(np.flatnonzero(np.isnan(proba).any(1))[0])
        at = where(path, df.index[i] if df.index.name == "line" else i + 1)
        for j, (c, v) in enumerate(raw.iloc[i].items()):
            if np.isnan(proba[i, j]) and v is not None and not (isinstance(v, float) and np.isnan(v)):
                raise FindingsError(f"{at}: column {c!r}: {v!r} is not a probability")
        raise FindingsError(f"{at}: empty probabilities (a row the model could not score)")
    return proba, df["stance"].map(LABELS.index).to_numpy()


def build_table(data: Collected, corr: Correction, small: int = SMALL_GROUP, seed: int = 0):
    """One row per group x period x stance: n, n_unscored, share_naive, share, ci_low, ci_high, method,
    small_group, fitted_on. Every group that has a row in the file is here, however small."""
    import pandas as pd

    rows = []
    for g, key in enumerate(data.all_keys()):
        est = estimate_group(corr, data.proba(key), seed=seed + g)
        for i, label in enumerate(LABELS):
            rows.append(
                {
                    **dict(zip(data.keys, key)),
                    "stance": label,
                    "n": est.n,
                    "n_unscored": data.unscored.get(key, 0),
                    "share_naive": est.naive[i],
                    "share": est.share[i],
                    "ci_low": est.low[i],
                    "ci_high": est.high[i],
                    "method": corr.method,
                    "small_group": est.n < small,
                    "fitted_on": corr.fitted_on,
                }
            )
    return pd.DataFrame(rows)


def analyze(predictions: Path, by: list[str], time: str | None, freq: str, corr: Correction, chunk_rows: int = 50_000):
    """The table for a predictions file (streamed) with a fitted correction."""
    data = collect(predictions, by, time, freq, chunk_rows)
    return build_table(data, corr), data
