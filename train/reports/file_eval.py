"""`stance eval file`: score a model on a study's own coded sample (any CSV / JSONL / Parquet with a text and a gold
column) and report what a researcher needs before trusting it on their collection: macro-F1 with a bootstrap interval,
per language and per speaker group (with n), the confusion matrix, calibration, and the misclassified rows, most
confident first. Also the agreement `stance predict` prints when its input carries gold labels.

The model is loaded by `load_for_predict` and the rows scored by `predict_values`, the path `stance predict` takes; the
figures are `metrics.evaluation_metrics`, the function training runs log, so the three agree on one file.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from train.data import DataError, Problem
from train.data.problems import _display, did_you_mean
from train.formats import sha256_file
from train.inference.readers import FORMATS
from train.inference.rows import predict_values
from train.inference.tables import TableError, read_rows
from train.metrics import evaluation_metrics, reliability_bins
from train.schema import LABELS
from train.tracking.registry import load_for_predict

READERS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


@dataclass
class FileEvaluation:
    path: str
    sha256: str
    model_uri: str
    model_version: str
    rows: pd.DataFrame  # every input row (original columns) + gold, language, speaker_group, predictions
    metrics: dict = field(default_factory=dict)
    not_scored: dict = field(default_factory=dict)  # reason -> rows (far too long, ...): reported, never hidden
    id_column: str = ""  # "id" when the file has ids (after --map); else rows are named by their line
    long_text: str = "truncate"  # how texts over the model's max length were scored (as `stance predict --long-text`)

    @property
    def scored(self) -> pd.DataFrame:
        return self.rows[self.rows["pred_error"] == ""]

    @property
    def errors(self) -> pd.DataFrame:
        """The misclassified rows, most confident first."""
        s = self.scored
        return s[s["gold"] != s["pred_stance"]].sort_values("pred_confidence", ascending=False, kind="stable")


def read_table(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The file (or only `columns`, those it has; train.inference.tables.read_rows) indexed by each row's file line
    (Parquet: row number), with CSV cells as written: text, an empty cell "" (never NaN, never a number). A malformed
    row is a DataError naming its line."""
    kind = READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(
            Problem(_display(path), None, None, f"unknown file type {path.suffix!r} (expected .csv, .jsonl or .parquet)")
        )
    try:
        names, rows = read_rows(path, "coded sample", columns=columns, fmt=kind)
    except TableError as e:
        raise DataError(Problem(_display(path), e.line, None, e.reason)) from None
    records = [rec for _, rec in rows]
    if kind == "csv":
        records = [{k: "" if v is None else v for k, v in rec.items()} for rec in records]
    return pd.DataFrame(records, columns=names, index=pd.Index([line for line, _ in rows], name="line"))


def coded_rows(path: Path, text_column: str = "text", gold_column: str = "stance", mapping: dict | None = None) -> pd.DataFrame:
    """The file's rows with `line`, `text`, `gold`, `language` and `speaker_group` columns added (the last two "" when
    the file has none), after renaming columns by `mapping` (as `stance data import csv --map`). Every row must have a
    text and a gold label among LABELS: otherwise a DataError naming each line (CSV: the file's line, header = 1, a
    row's first line when a quoted cell spans several; JSONL: the line; Parquet: the row number)."""
    df = read_table(path)
    shown = _display(path)
    df = df.rename(columns=mapping or {})
    for name, what in ((text_column, "--text-column"), (gold_column, "--gold-column")):
        if name not in df.columns:
            cols = [str(c) for c in df.columns]
            raise DataError(
                Problem(
                    shown, None, name, f"no column {name!r} ({what}; the file has {', '.join(cols)}){did_you_mean(name, cols)}"
                )
            )
    out = df.copy()
    out["text"] = df[text_column]
    out["gold"] = df[gold_column].map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    for name in ("language", "speaker_group"):
        out[name] = df[name].fillna("").astype(str) if name in df.columns else ""
    problems = []
    for i, (line, text, gold) in enumerate(zip(df.index, out["text"], out["gold"])):
        if gold not in LABELS:
            problems.append(
                Problem(
                    shown,
                    line,
                    gold_column,
                    f"gold label {df[gold_column].iloc[i]!r} is not one of {', '.join(LABELS)}{did_you_mean(gold, LABELS)}",
                )
            )
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(shown, line, text_column, "no text to score"))
    if problems:
        raise DataError(problems)
    if out.empty:
        raise DataError(Problem(shown, None, None, "no rows"))
    out.insert(0, "line", df.index.to_numpy())
    return out.reset_index(drop=True)


def evaluate_file(
    model: str,
    path: Path,
    text_column: str = "text",
    gold_column: str = "stance",
    mapping: dict | None = None,
    batch_size: int = 64,
    device: str = "auto",
    long_text: str = "truncate",
) -> FileEvaluation:
    rows = coded_rows(Path(path), text_column, gold_column, mapping)
    with tempfile.TemporaryDirectory(prefix="stance-eval-") as tmp:
        stance, uri, version, _, _ = load_for_predict(model, Path(tmp), device)
        pred = predict_values(stance, rows["text"].tolist(), batch_size=batch_size, long_text=long_text)
    rows = pd.concat(
        [rows.reset_index(drop=True), pred.drop(columns=[c for c in pred if c in rows]).reset_index(drop=True)], axis=1
    )
    rows["pred_error"] = rows["pred_error"].fillna("").astype(str)
    ev = FileEvaluation(
        _display(Path(path)),
        sha256_file(Path(path)),
        uri,
        version,
        rows,
        id_column="id" if "id" in rows else "",
        long_text=long_text,
    )
    ev.not_scored = rows.loc[rows["pred_error"] != "", "pred_error"].value_counts().to_dict()
    scored = ev.scored
    if scored.empty:
        raise DataError(Problem(ev.path, None, None, f"no row could be scored: {ev.not_scored}"))
    ev.metrics = score(scored)
    return ev


def score(scored: pd.DataFrame) -> dict:
    """evaluation_metrics of the scored rows (gold / prob_* columns), per language and group where the file has them."""
    y = scored["gold"].map(LABELS.index).to_numpy()
    proba = scored[[f"prob_{l}" for l in LABELS]].astype(float).to_numpy(np.float64)
    languages = scored["language"].tolist() if (scored["language"] != "").any() else None
    groups = scored["speaker_group"].tolist() if (scored["speaker_group"] != "").any() else None
    return evaluation_metrics(y, proba, languages, groups)


# -- the report on screen ------------------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def _breakdown(ev: FileEvaluation, column: str, prefix: str) -> str:
    s = ev.scored
    rows = []
    for value, part in s.groupby(column, sort=True):
        f1 = ev.metrics.get(f"{prefix}{value}")
        acc = float((part["gold"] == part["pred_stance"]).mean())
        rows.append([str(value) or "(empty)", str(len(part)), f"{f1:.3f}" if f1 is not None else "-", f"{acc:.3f}"])
    return _table([column, "n", "macro_f1", "accuracy"], rows)


def render(ev: FileEvaluation, top: int = 10) -> str:
    m, s = ev.metrics, ev.scored
    version = f" (version {ev.model_version})" if ev.model_version else ""
    out = [
        f"{ev.path}: {len(s)} rows scored by {ev.model_uri}{version}"
        + (f", long texts scored whole (--long-text {ev.long_text})" if ev.long_text != "truncate" else ""),
        f"macro-F1 {m['macro_f1']:.3f} (95% CI {m['macro_f1_ci_low']:.3f}-{m['macro_f1_ci_high']:.3f}, bootstrap), "
        f"accuracy {m['accuracy']:.3f}, ECE {m['ece']:.3f}",
    ]
    if ev.not_scored:
        out.append("NOT SCORED (left out of every figure): " + ", ".join(f"{k}: {v}" for k, v in ev.not_scored.items()))
    out.append(
        "\nper class\n"
        + _table(
            ["stance", "n", "precision", "recall", "f1"],
            [
                [
                    l,
                    str(int((s["gold"] == l).sum())),
                    f"{m[f'precision_{l}']:.3f}",
                    f"{m[f'recall_{l}']:.3f}",
                    f"{m[f'f1_{l}']:.3f}",
                ]
                for l in LABELS
            ],
        )
    )
    for column, prefix in (("language", "macro_f1_lang_"), ("speaker_group", "macro_f1_group_")):
        if any(k.startswith(prefix) for k in m):
            out.append(f"\nper {column.replace('_', ' ')}\n" + _breakdown(ev, column, prefix))
    cm = confusion(s)
    out.append(
        "\nconfusion matrix (rows: gold, columns: predicted)\n"
        + _table(["gold \\ predicted", *LABELS], [[l, *map(str, cm[i])] for i, l in enumerate(LABELS)])
    )
    bins = reliability_bins(s["gold"].map(LABELS.index).to_numpy(), s[[f"prob_{l}" for l in LABELS]].to_numpy(np.float64))
    out.append(
        "\ncalibration (confidence bins)\n"
        + _table(
            ["mean confidence", "accuracy", "rows"],
            [[f"{c:.2f}", f"{a:.2f}", str(round(share * len(s)))] for c, a, share in bins],
        )
    )
    errors = ev.errors
    out.append(
        f"\nmisclassified: {len(errors)} of {len(s)}"
        + (f" (the {min(top, len(errors))} most confident)" if len(errors) and top > 0 else "")
    )
    if len(errors) and top > 0:
        out.append(
            _table(
                ["line", "language", "gold", "predicted", "conf", "text"],
                [
                    [str(r.line), r.language, r.gold, r.pred_stance, f"{r.pred_confidence:.2f}", _short(r.text)]
                    for r in errors.head(top).itertuples()
                ],
            )
        )
    return "\n".join(out) + "\n"


def confusion(scored: pd.DataFrame) -> np.ndarray:
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(scored["gold"], scored["pred_stance"], labels=list(LABELS))


def write_rows(df: pd.DataFrame, path: Path) -> None:
    """Rows to .csv / .jsonl / .parquet by extension, atomically (never half a file)."""

    from train.formats import write_atomic, write_text_atomic

    kind = READERS.get(Path(path).suffix.lower())
    if kind == "csv":
        write_text_atomic(path, df.to_csv(index=False))
    elif kind == "jsonl":
        write_text_atomic(path, df.to_json(orient="records", lines=True, force_ascii=False))
    elif kind == "parquet":
        write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False))
    else:
        raise DataError(Problem(str(path), None, None, "unknown file type (expected .csv, .jsonl or .parquet)"))


def _short(text: str, n: int = 70) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -- `stance predict` with a gold column ----------------------------------------------------------------------------


def agreement(output: Path, gold_column: str) -> tuple[dict, int, int] | None:
    """(metrics, rows compared, rows without a usable gold label) from a `stance predict` output whose input carried
    gold labels in `gold_column`; None when the output has no such column."""
    df = _output_columns(Path(output), [gold_column, "pred_stance", "language", *(f"prob_{l}" for l in LABELS)])
    if gold_column not in df.columns:
        return None
    gold = df[gold_column].map(lambda v: v.strip().lower() if isinstance(v, str) else v)
    usable = gold.isin(LABELS) & df["pred_stance"].isin(LABELS)
    part = df[usable].assign(
        gold=gold[usable], language=df.get("language", pd.Series("", index=df.index))[usable].fillna("").astype(str)
    )
    part = part.assign(speaker_group="")
    if part.empty:
        return {}, 0, int((~usable).sum())
    return score(part), len(part), int((~usable).sum())


def _output_columns(path: Path, columns: list[str]) -> pd.DataFrame:
    """The `columns` a `stance predict` output has, read column-wise (pandas' C parser, Parquet column projection),
    not by read_table: the output of a whole collection may hold millions of rows, which the row-by-row reader reads
    6x (CSV) to 40x (Parquet) slower, and predict wrote it, so there is no hand-made row to point at."""
    kind = FORMATS[path.suffix.lower()]  # predict's output formats
    if kind == "csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", usecols=lambda c: c in columns)
    if kind == "jsonl":
        df = pd.read_json(path, lines=True, dtype=False, convert_dates=False)
        return df[[c for c in df.columns if c in columns]]
    import pyarrow.parquet as pq

    return pd.read_parquet(path, columns=[c for c in pq.read_schema(path).names if c in columns])
