"""Labels the corpus itself contradicts (`stance data label-issues`): confident learning on out-of-fold probabilities.

Every labeled row gets a probability from a model that never saw it (k-fold cross-validation with the run config's
estimator; the TF-IDF baseline takes seconds per fold), and cleanlab's `find_label_issues` (Northcutt et al. 2021,
confident learning) flags the rows whose given label is much less likely than another one, given how confidently the
model separates the classes elsewhere. The result is a ranked list for review in `stance label` (it has `id` and
`reason` columns): a flagged row is a question for a human, often a borderline case, sometimes a guideline gap, and
nothing is ever relabeled here.

Caveat: rows that are translations of each other fall into different folds, so the model has seen a translation of
a row when it scores it; that makes the given label look more plausible and the report conservative (fewer flags).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.coding.records import read_records
from train.data import corpus_files, load_statements
from train.models import estimator_from_config
from train.schema import LABELS

COLUMNS = [
    "id",
    "reason",
    "given_label",
    "suggested_label",
    "confidence",
    "given_label_probability",
    "label_quality",
    "language",
    "speaker_group",
    "split",
    "file",
    "line",
    "text",
]


def out_of_fold_proba(cfg, texts: list[str], labels: list[str], folds: int = 5, seed: int = 0) -> np.ndarray:
    """Probabilities for every row from a model fitted on the other folds (stratified by label)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.array([LABELS.index(label) for label in labels])
    proba = np.zeros((len(texts), len(LABELS)), dtype=np.float64)
    for train_idx, test_idx in StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(texts, y):
        est = estimator_from_config(cfg)
        est.fit([texts[i] for i in train_idx], [labels[i] for i in train_idx])
        proba[test_idx] = est.predict_proba([texts[i] for i in test_idx])
    return proba


def row_locations(paths) -> dict[str, tuple[str, int]]:
    """id -> (file, line) for the corpus files (the report points reviewers at the row to look at)."""
    files, _ = corpus_files(paths)
    where = {}
    for path in files:
        for line, row in read_records(path):
            where.setdefault(str(row.get("id")), (str(path), line))
    return where


def find_issues(
    ids, texts, labels, proba: np.ndarray, extra: dict[str, list] | None = None, where: dict[str, tuple[str, int]] | None = None
) -> list[dict]:
    """The rows cleanlab flags, most likely mislabeled first (lowest self-confidence), as report rows."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.array([LABELS.index(label) for label in labels])
    ranked = find_label_issues(labels=y, pred_probs=proba, return_indices_ranked_by="self_confidence")
    quality = get_label_quality_scores(y, proba)
    extra, where = extra or {}, where or {}
    out = []
    for i in ranked:
        given, suggested = LABELS[y[i]], LABELS[int(proba[i].argmax())]
        if suggested == given:  # flagged for low confidence alone: the second most likely label is the question
            suggested = LABELS[int(np.argsort(proba[i])[-2])]
        path, line = where.get(str(ids[i]), ("", ""))
        out.append(
            {
                "id": ids[i],
                "reason": f"label issue: given {given}, the data suggests {suggested} "
                f"(p={proba[i][LABELS.index(suggested)]:.2f} vs {proba[i][y[i]]:.2f})",
                "given_label": given,
                "suggested_label": suggested,
                "confidence": round(float(proba[i][LABELS.index(suggested)]), 4),
                "given_label_probability": round(float(proba[i][y[i]]), 4),
                "label_quality": round(float(quality[i]), 4),
                "file": path,
                "line": line,
                "text": texts[i],
                **{k: v[i] for k, v in extra.items()},
            }
        )
    return out


def label_issues(cfg, folds: int = 5, seed: int = 0) -> tuple[list[dict], int]:
    """(report rows, rows checked) for the corpus of a run config (cfg.data.paths, every split)."""
    df = load_statements([Path(p) for p in cfg.data.paths])
    texts, labels, ids = df["text"].tolist(), df["stance"].tolist(), df["id"].astype(str).tolist()
    proba = out_of_fold_proba(cfg, texts, labels, folds, seed)
    extra = {k: df[k].tolist() for k in ("language", "speaker_group", "split")}
    return find_issues(ids, texts, labels, proba, extra, row_locations(cfg.data.paths)), len(df)
