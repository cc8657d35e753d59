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


FEW_ROWS = 20  # a language with fewer evaluation rows gets a pale bar: its macro-F1 moves by a lot with one row


def per_language_bars(metrics: dict, prefix: str, languages=None):
    """Every language's macro-F1, core languages first, each labelled with its row count (when `languages`, the
    eval rows' languages, is given); None when the metrics have no per-language values."""
    from train.schema import CORE_LANGUAGES

    present = {k.removeprefix("macro_f1_lang_") for k in metrics if k.startswith("macro_f1_lang_")}
    if not present:
        return None
    langs = [l for l in CORE_LANGUAGES if l in present] + sorted(present - set(CORE_LANGUAGES))
    counts = {l: int((np.asarray(languages) == l).sum()) for l in langs} if languages is not None else {}
    fig, ax = _plt().subplots(figsize=(max(5, 0.6 * len(langs) + 2), 3.6))
    vals = [metrics[f"macro_f1_lang_{l}"] for l in langs]
    colors = ["#4c72b0" if counts.get(l, FEW_ROWS) >= FEW_ROWS else "#b8c7e0" for l in langs]
    ax.bar(range(len(langs)), vals, color=colors)
    ax.set_xticks(range(len(langs)), [f"{l}\n{counts[l]}" if counts else l for l in langs], fontsize=8)
    ax.axhline(metrics["macro_f1"], color="k", ls="--", lw=1, label=f"all: {metrics['macro_f1']:.3f}")
    ax.set_ylim(0, 1)
    ax.set_ylabel("macro-F1")
    ax.set_title(f"{prefix}: macro-F1 per language", fontsize=9)
    if counts:
        ax.set_xlabel(f"language and its rows (pale: fewer than {FEW_ROWS})", fontsize=8)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def group_bars(groups: list[dict], title: str):
    """The comparison figure: macro-F1 of the core languages, the others pooled and all rows, each bar with its
    bootstrap 95% interval and its n (metrics.macro_f1_by_group). Same bars in the same order for every run, so
    two runs' figures can be compared side by side in the MLflow UI's compare view."""
    fig, ax = _plt().subplots(figsize=(6.4, 3.6))
    x = np.arange(len(groups))
    vals = np.array([g["macro_f1"] for g in groups])
    err = np.array([[g["macro_f1"] - g["ci_low"] for g in groups], [g["ci_high"] - g["macro_f1"] for g in groups]])
    colors = ["#4c72b0" if g["group"] != "all" else "#333333" for g in groups]
    ax.bar(x, vals, yerr=err.clip(0), capsize=4, color=colors, error_kw={"lw": 1})
    for i, g in enumerate(groups):
        ax.text(i, 0.02, f"{g['macro_f1']:.3f}", ha="center", va="bottom", color="white", fontsize=8, fontweight="bold")
    ax.set_xticks(x, [f"{g['group']}\nn={g['n']}" for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("macro-F1 (95% bootstrap CI)")
    ax.set_title(title, fontsize=9)
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
