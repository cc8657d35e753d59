"""Score a `stance predict` output against the gold `stance` column it carries through.

    python scripts/score_predictions.py /tmp/dev_pred.parquet [--json out.json] [--ids ids.txt] [--name label]

Prints macro-F1 (with a bootstrap 95% interval), accuracy, per-class recall, per-core-language macro-F1, the
confusion matrix (rows gold, columns predicted), expected calibration error, the two error counts the real-text
work tracks (hostile rows found, neutral rows called conciliatory), and, where the input has a `notes` column, how
many errors fall on rows whose notes start with `borderline:`. `--ids` restricts scoring to the ids listed in a file
(one per line), e.g. the test split of an older corpus.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from train.metrics import bootstrap_macro_f1, expected_calibration_error
from train.schema import LABELS

CORE = ("en", "ru", "tr", "az", "uk")


def read(path: str) -> pd.DataFrame:
    p = Path(path)
    if p.suffix == ".parquet":
        return pd.read_parquet(p)
    if p.suffix in (".jsonl", ".json"):
        return pd.read_json(p, lines=True)
    return pd.read_csv(p)


def score(df: pd.DataFrame) -> dict:
    df = df[df["pred_stance"].notna() & (df["pred_stance"] != "")]
    y = df["stance"].map(LABELS.index).to_numpy()
    yp = df["pred_stance"].map(LABELS.index).to_numpy()
    proba = df[[f"prob_{name}" for name in LABELS]].to_numpy(dtype=float)
    ids = list(range(len(LABELS)))
    lo, hi = bootstrap_macro_f1(y, yp)
    out = {
        "rows": int(len(df)),
        "macro_f1": float(f1_score(y, yp, average="macro", labels=ids, zero_division=0)),
        "macro_f1_ci": [lo, hi],
        "accuracy": float((y == yp).mean()),
        "ece": expected_calibration_error(y, proba),
        "recall": dict(zip(LABELS, map(float, recall_score(y, yp, labels=ids, average=None, zero_division=0)))),
        "confusion": confusion_matrix(y, yp, labels=ids).tolist(),
        "hostile_found": f"{int(((y == 2) & (yp == 2)).sum())}/{int((y == 2).sum())}",
        "neutral_to_conciliatory": f"{int(((y == 1) & (yp == 0)).sum())}/{int((y == 1).sum())}",
        "per_language": {},
    }
    langs = df["language"].to_numpy()
    for lang in CORE:
        m = langs == lang
        if m.any():
            out["per_language"][lang] = float(f1_score(y[m], yp[m], average="macro", labels=ids, zero_division=0))
    m = ~np.isin(langs, CORE)
    if m.any():
        out["per_language"]["other"] = float(f1_score(y[m], yp[m], average="macro", labels=ids, zero_division=0))
    wrong = y != yp
    out["errors"] = int(wrong.sum())
    out["mean_confidence_wrong"] = float(proba.max(1)[wrong].mean()) if wrong.any() else float("nan")
    out["mean_confidence_right"] = float(proba.max(1)[~wrong].mean()) if (~wrong).any() else float("nan")
    if "notes" in df:
        border = df["notes"].fillna("").str.lower().str.startswith("borderline:").to_numpy()
        out["borderline"] = {
            "rows": int(border.sum()),
            "errors": int((wrong & border).sum()),
            "error_rate_borderline": float(wrong[border].mean()) if border.any() else float("nan"),
            "error_rate_other": float(wrong[~border].mean()) if (~border).any() else float("nan"),
        }
    return out


def render(name: str, s: dict) -> str:
    lines = [f"## {name}: {s['rows']} rows"]
    lines.append(
        f"macro-F1 {s['macro_f1']:.3f} (95% CI {s['macro_f1_ci'][0]:.3f}-{s['macro_f1_ci'][1]:.3f}), "
        f"accuracy {s['accuracy']:.3f}, ECE {s['ece']:.3f}"
    )
    lines.append("recall: " + ", ".join(f"{k} {v:.3f}" for k, v in s["recall"].items()))
    lines.append("per language: " + ", ".join(f"{k} {v:.3f}" for k, v in s["per_language"].items()))
    lines.append(f"hostile found {s['hostile_found']}; neutral called conciliatory {s['neutral_to_conciliatory']}")
    lines.append(
        f"errors {s['errors']}; mean confidence wrong {s['mean_confidence_wrong']:.3f}, "
        f"right {s['mean_confidence_right']:.3f}"
    )
    lines.append("confusion (rows gold, columns predicted: " + " / ".join(LABELS) + ")")
    for name_, row in zip(LABELS, s["confusion"]):
        lines.append(f"  {name_:>12}: " + " ".join(f"{v:4d}" for v in row))
    if "borderline" in s:
        b = s["borderline"]
        lines.append(
            f"borderline rows {b['rows']}: {b['errors']} errors (error rate {b['error_rate_borderline']:.3f} "
            f"vs {b['error_rate_other']:.3f} on the others)"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("predictions")
    ap.add_argument("--ids", help="file with one id per line: score only these rows")
    ap.add_argument("--name", default=None)
    ap.add_argument("--json", help="write the figures here as JSON")
    a = ap.parse_args()
    df = read(a.predictions)
    if a.ids:
        keep = set(Path(a.ids).read_text().split())
        df = df[df["id"].isin(keep)]
    s = score(df)
    print(render(a.name or a.predictions, s))
    if a.json:
        Path(a.json).write_text(json.dumps(s, indent=2))


if __name__ == "__main__":
    main()
