"""`stance analyze` top to bottom: labeled rows for the correction, the grouped predictions, one table row per
group x period x stance, then the files a paper needs (train.findings.outputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.findings.collect import PROB_COLUMNS, Collected, FindingsError, collect
from train.findings.quantify import SMALL_GROUP, Correction, estimate_group
from train.schema import LABELS


def read_labeled(path: Path):
    """A labeled file (CSV / JSONL / Parquet) as a DataFrame; it must have `stance` (and the prob_* columns unless
    analyze scores it itself). Unknown labels and empty stances are errors naming the row."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FindingsError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = pd.read_parquet(path)
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype={"stance": str})
    elif suffix in (".jsonl", ".ndjson"):
        df = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
    else:
        raise FindingsError(f"{path}: unknown format {path.suffix!r}; use .csv, .jsonl or .parquet")
    if "stance" not in df.columns:
        raise FindingsError(
            f"{path}: no column 'stance' (the true label of each row); the file has: {', '.join(map(str, df.columns))}"
        )
    bad = ~df["stance"].isin(LABELS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FindingsError(f"{path}: row {i + 1}: column 'stance': {df['stance'].iloc[i]!r} is not one of {', '.join(LABELS)}")
    return df


def validation_arrays(df, path) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, class indices) of a scored labeled file."""
    missing = [c for c in PROB_COLUMNS if c not in df.columns]
    if missing:
        raise FindingsError(f"{path}: no column {', '.join(map(repr, missing))}: score it first (or pass --model to analyze)")
    proba = df[PROB_COLUMNS].to_numpy(dtype=np.float64)
    if np.isnan(proba).any():
        i = int(np.flatnonzero(np.isnan(proba).any(1))[0])
        raise FindingsError(f"{path}: row {i + 1}: empty probabilities (a row the model could not score)")
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
