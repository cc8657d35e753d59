"""Evaluation metrics shared by the baseline and the transformers, so both log the same names (scikit-learn does the maths)."""

from __future__ import annotations

import numpy as np

from train.schema import LABELS


def compute_metrics(y_true, proba, languages=None, labels=LABELS, groups=None) -> dict[str, float]:
    """macro-F1, accuracy, per-class precision/recall/F1, per-language macro-F1 and expected calibration error; with
    `groups` (speaker groups) also per-group macro-F1 (`macro_f1_group_<group>`), counted like the languages."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    y_true = np.asarray(y_true)
    proba = np.asarray(proba)
    y_pred = proba.argmax(1)
    ids = list(range(len(labels)))
    out = {
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=ids, zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", labels=ids, zero_division=0)),
        "ece": expected_calibration_error(y_true, proba),
    }
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    for i, name in enumerate(labels):
        out[f"precision_{name}"], out[f"recall_{name}"], out[f"f1_{name}"] = float(p[i]), float(r[i]), float(f[i])
    for prefix, values in (("macro_f1_lang_", languages), ("macro_f1_group_", groups)):
        if values is None:
            continue
        values = np.asarray(values)
        for value in sorted(set(values.tolist())):
            m = values == value
            # over the classes present in this language's gold or predicted labels: a language with a handful of
            # rows would otherwise be scored against classes it never had
            out[f"{prefix}{value}"] = float(f1_score(y_true[m], y_pred[m], average="macro", zero_division=0))
    return out


def reliability_bins(y_true, proba, n_bins: int = 10) -> list[tuple[float, float, float]]:
    """(mean confidence, accuracy, share of rows) for each non-empty equal-width confidence bin."""
    proba = np.asarray(proba)
    conf, correct = proba.max(1), (proba.argmax(1) == np.asarray(y_true)).astype(float)
    edges = np.linspace(0, 1, n_bins + 1)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            bins.append((float(conf[m].mean()), float(correct[m].mean()), float(m.mean())))
    return bins


def expected_calibration_error(y_true, proba, n_bins: int = 10) -> float:
    return float(sum(share * abs(acc - conf) for conf, acc, share in reliability_bins(y_true, proba, n_bins)))


def bootstrap_macro_f1(y_true, y_pred, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of macro-F1 over resampled evaluation rows."""
    from sklearn.metrics import f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    ids = list(range(len(LABELS)))
    scores = []
    for _ in range(n):
        idx = rng.integers(0, len(y_true), len(y_true))
        scores.append(f1_score(y_true[idx], y_pred[idx], average="macro", labels=ids, zero_division=0))
    return float(np.quantile(scores, alpha / 2)), float(np.quantile(scores, 1 - alpha / 2))


def evaluation_metrics(y_true, proba, languages=None, groups=None) -> dict[str, float]:
    """Everything a run logs for an evaluation set: compute_metrics plus the bootstrap interval of macro-F1.
    `stance train` logs these, `stance runs verify` recomputes them and `stance eval file` reports them (with the
    speaker groups), so all use this one function."""
    proba = np.asarray(proba)
    out = compute_metrics(y_true, proba, languages, groups=groups)
    out["macro_f1_ci_low"], out["macro_f1_ci_high"] = bootstrap_macro_f1(y_true, proba.argmax(1))
    return out


def metric_key(eval_set: str, name: str) -> str:
    """The name under which a run logs metric `name` of evaluation set `eval_set` ("" or "eval": the eval split;
    an extra evaluation file: `<its name>/<metric>`, which the MLflow UI groups into one section)."""
    return name if eval_set in ("", "eval") else f"{eval_set}/{name}"


def macro_f1_by_group(y_true, y_pred, languages, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05) -> list[dict]:
    """macro-F1 with its row count and a percentile bootstrap interval for every core language present, the other
    languages pooled ("other") and all rows ("all"): what a reader needs to tell a 3-row language's 1.0 from a
    100-row one's. Per language as in compute_metrics (over the classes present); "all" over every class, as macro_f1.

    The bootstrap is vectorised (confusion counts of all resamples at once): a few milliseconds per group."""
    from train.schema import CORE_LANGUAGES

    y_true, y_pred, languages = np.asarray(y_true), np.asarray(y_pred), np.asarray(languages)
    groups = [(lang, languages == lang) for lang in CORE_LANGUAGES if (languages == lang).any()]
    other = ~np.isin(languages, CORE_LANGUAGES)
    if other.any():
        groups.append(("other", other))
    groups.append(("all", np.ones(len(y_true), bool)))
    out = []
    for name, m in groups:
        t, p = y_true[m], y_pred[m]
        every_class = name == "all"
        # the same draws as bootstrap_macro_f1: "all" reproduces the logged macro_f1_ci_low / _high exactly
        idx = np.random.default_rng(seed).integers(0, len(t), (n_boot, len(t)))
        boot = _macro_f1_rows(t[idx], p[idx], every_class)
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
        value = float(_macro_f1_rows(t[None], p[None], every_class)[0])
        out.append({"group": name, "n": int(m.sum()), "macro_f1": value, "ci_low": float(lo), "ci_high": float(hi)})
    return out


def _macro_f1_rows(t: np.ndarray, p: np.ndarray, every_class: bool) -> np.ndarray:
    """macro-F1 of each row of (resamples, rows) label matrices; zero_division=0 as scikit-learn's f1_score."""
    k = len(LABELS)
    codes = (t * k + p) + (np.arange(len(t)) * k * k)[:, None]
    cm = np.bincount(codes.ravel(), minlength=len(t) * k * k).reshape(len(t), k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    fn, fp = cm.sum(2) - tp, cm.sum(1) - tp
    denom = 2 * tp + fp + fn
    f1 = np.where(denom > 0, 2 * tp / np.maximum(denom, 1), 0.0)
    present = np.ones_like(denom, bool) if every_class else denom > 0
    return (f1 * present).sum(1) / np.maximum(present.sum(1), 1)
