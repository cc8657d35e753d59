"""What a run logs about its data and its evaluation: dataset inputs (lineage), metrics' figures and report, the scored
rows `stance runs verify` re-scores, and the prediction tables shown in the MLflow UI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from train.schema import LABELS
from train.tracking import plots


def log_dataset(df, context: str, source: str) -> None:
    """The exact rows used, as an MLflow dataset input with its digest (data lineage)."""
    import mlflow

    cols = [c for c in ("id", "text", "language", "stance", "speaker_group", "source", "split") if c in df.columns]
    ds = mlflow.data.from_pandas(df[cols].reset_index(drop=True), source=source, name=f"labeled-{context}", targets="stance")
    mlflow.log_input(ds, context=context)


def log_evaluation(eval_df, proba: np.ndarray, metrics: dict, prefix: str = "eval") -> None:
    """Artifacts that render in the MLflow UI: confusion matrix, per-language bars, reliability diagram, report, tables."""
    import mlflow

    y_true = eval_df["stance"].map(LABELS.index).to_numpy()
    mlflow.log_text(plots.classification_report_text(y_true, proba), f"{prefix}/classification_report.txt")
    figures = {
        "confusion_matrix.png": plots.confusion_matrix(y_true, proba, prefix),
        "per_language_macro_f1.png": plots.per_language_bars(metrics, prefix),
        "reliability_diagram.png": plots.reliability_diagram(y_true, proba, metrics),
    }
    for name, fig in figures.items():
        if fig is not None:
            mlflow.log_figure(fig, f"{prefix}/{name}")
            plots.close(fig)

    log_scored_rows(eval_df, proba, prefix)
    table = predictions_table(eval_df, proba)
    mlflow.log_table(table, f"{prefix}/predictions.json")
    wrong = table[table["gold"] != table["predicted"]].sort_values("confidence", ascending=False)
    mlflow.log_table(wrong, f"{prefix}/misclassified.json")


SCORED_FILE = "scored.parquet"


def log_scored_rows(eval_df, proba: np.ndarray, prefix: str = "eval") -> None:
    """The evaluation rows with the exact probabilities the run computed (float32, not rounded): what
    `stance runs verify` re-scores the logged model on and compares against, even after labeled/ has changed."""
    import mlflow

    cols = [c for c in ("id", "text", "language", "speaker_group", "stance") if c in eval_df.columns]
    table = eval_df[cols].reset_index(drop=True).copy()
    for i, name in enumerate(LABELS):
        table[f"prob_{name}"] = np.asarray(proba, dtype=np.float32)[:, i]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / SCORED_FILE
        table.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), prefix)


def predictions_table(eval_df, proba: np.ndarray):
    import pandas as pd

    table = pd.DataFrame(
        {
            "id": eval_df["id"].to_numpy(),
            "text": eval_df["text"].to_numpy(),
            "language": eval_df["language"].to_numpy(),
            "speaker_group": eval_df["speaker_group"].to_numpy(),
            "gold": eval_df["stance"].to_numpy(),
            "predicted": [LABELS[i] for i in proba.argmax(1)],
            "confidence": proba.max(1).round(4),
        }
    )
    for i, name in enumerate(LABELS):
        table[f"prob_{name}"] = proba[:, i].round(4)
    return table
