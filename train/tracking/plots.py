"""The evaluation figures a run logs (matplotlib, Agg backend): confusion matrix, macro-F1 per language, reliability."""

from __future__ import annotations

import numpy as np

from train.metrics import reliability_bins
from train.schema import LABELS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def close(fig) -> None:
    _plt().close(fig)


def classification_report_text(y_true, proba: np.ndarray) -> str:
    from sklearn.metrics import classification_report

    return classification_report(
        y_true, proba.argmax(1), labels=list(range(len(LABELS))), target_names=list(LABELS), digits=3, zero_division=0
    )


def confusion_matrix(y_true, proba: np.ndarray, prefix: str):
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = _plt().subplots(figsize=(4.6, 4))
    ConfusionMatrixDisplay.from_predictions(
        y_true, proba.argmax(1), labels=list(range(len(LABELS))), display_labels=list(LABELS), ax=ax, colorbar=False, cmap="Blues"
    )
    ax.set_title(f"{prefix}: confusion matrix")
    fig.tight_layout()
    return fig


def per_language_bars(metrics: dict, prefix: str):
    """None when the metrics have no per-language values."""
    langs = sorted(k.removeprefix("macro_f1_lang_") for k in metrics if k.startswith("macro_f1_lang_"))
    if not langs:
        return None
    fig, ax = _plt().subplots(figsize=(max(4, 0.6 * len(langs) + 2), 3.2))
    vals = [metrics[f"macro_f1_lang_{l}"] for l in langs]
    ax.bar(langs, vals, color="#4c72b0")
    ax.axhline(metrics["macro_f1"], color="k", ls="--", lw=1, label=f"all: {metrics['macro_f1']:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1")
    ax.set_title(f"{prefix}: macro-F1 per language")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def reliability_diagram(y_true, proba: np.ndarray, metrics: dict):
    bins = reliability_bins(y_true, proba)  # the same bins the logged ECE is computed from
    centers, accs = [b[0] for b in bins], [b[1] for b in bins]
    fig, ax = _plt().subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    ax.plot(centers, accs, "o-")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (ECE {metrics.get('ece', float('nan')):.3f})")
    fig.tight_layout()
    return fig
