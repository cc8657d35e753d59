"""What a run logs about its data and its evaluation: dataset inputs (lineage), metrics' figures and report, the scored
rows `stance runs verify` re-scores, and the prediction tables shown in the MLflow UI."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from train.metrics import macro_f1_by_group, metric_key
from train.schema import LABELS
from train.tracking import plots


def log_dataset(df, context: str, source: str) -> None:
    """The exact rows used, as an MLflow dataset input with its digest (data lineage)."""
    import mlflow

    cols = [c for c in ("id", "text", "language", "stance", "speaker_group", "source", "split") if c in df.columns]
    ds = mlflow.data.from_pandas(df[cols].reset_index(drop=True), source=source, name=f"labeled-{context}", targets="stance")
    try:
        mlflow.log_input(ds, context=context)
    except mlflow.exceptions.MlflowException as e:
        # Two workers of one search (stance tune) logging the same rows at the same moment: MLflow looks the dataset up,
        # finds none, and both insert it; the loser hits the unique key. The row exists now, so a second call links it.
        if "UNIQUE constraint failed: datasets" not in str(e):
            raise
        mlflow.log_input(ds, context=context)


def log_evaluation(eval_df, proba: np.ndarray, metrics: dict, prefix: str = "eval") -> None:
    """Artifacts that render in the MLflow UI: confusion matrix, per-language bars, reliability diagram, report, tables;
    and the at-a-glance summary (log_summary)."""
    import mlflow

    y_true = eval_df["stance"].map(LABELS.index).to_numpy()
    mlflow.log_text(plots.classification_report_text(y_true, proba), f"{prefix}/classification_report.txt")
    figures = {
        f"{prefix}/confusion_matrix.png": plots.confusion_matrix(y_true, proba, prefix),
        f"{prefix}/per_language_macro_f1.png": plots.per_language_bars(metrics, prefix, eval_df["language"].to_numpy()),
        f"{prefix}/reliability_diagram.png": plots.reliability_diagram(y_true, proba, metrics),
    }
    if "language" in eval_df.columns:
        groups = macro_f1_by_group(y_true, proba.argmax(1), eval_df["language"].to_numpy())
        log_summary(groups, prefix)
        title = f"{'test split' if prefix == 'eval' else prefix}: macro-F1 by language (95% CI)"
        figures[summary_figure_path(prefix)] = plots.group_bars(groups, title)
    for path, fig in figures.items():
        if fig is not None:
            mlflow.log_figure(fig, path)
            plots.close(fig)

    log_scored_rows(eval_df, proba, prefix)
    table = predictions_table(eval_df, proba)
    mlflow.log_table(table, f"{prefix}/predictions.json")
    wrong = table[table["gold"] != table["predicted"]].sort_values("confidence", ascending=False)
    mlflow.log_table(wrong, f"{prefix}/misclassified.json")


def summary_figure_path(prefix: str = "eval") -> str:
    """At the artifact root: the MLflow UI's compare view shows only files at the root that every compared run has
    (it lists no folder), so the comparison figure lives there under a name that does not depend on the run."""
    return f"summary_{prefix}.png"


def summary_metric_key(prefix: str, name: str) -> str:
    """`f1/<name>` for the eval split, `<set>/f1/<name>` for an extra evaluation set: short, so that the runs table's
    headers show the language, not a cut-off prefix."""
    return metric_key(prefix, f"f1/{name}")


COUNTS_TAG = "n_eval"


def log_summary(groups: list[dict], prefix: str = "eval") -> None:
    """What the runs table shows at a glance (train.tracking.server.metrics_view): macro-F1 of all rows, of each
    core language and of the other languages pooled, rounded to 3 decimals (the exact values stay in `macro_f1` and
    `macro_f1_lang_<xx>`, which `stance runs verify` checks), the interval of all rows, and the row counts in one tag
    (`n_eval`: "en 120 · ru 118 · ... · all 742") beside them."""
    import mlflow

    values = {summary_metric_key(prefix, g["group"]): round(g["macro_f1"], 3) for g in groups}
    whole = groups[-1]  # "all"
    values[summary_metric_key(prefix, "ci_low")] = round(whole["ci_low"], 3)
    values[summary_metric_key(prefix, "ci_high")] = round(whole["ci_high"], 3)
    mlflow.log_metrics(values)
    mlflow.set_tag(metric_key(prefix, COUNTS_TAG), " · ".join(f"{g['group']} {g['n']}" for g in groups))


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
