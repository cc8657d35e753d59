"""TF-IDF over character n-grams with logistic regression: the scikit-learn reference beside the transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.models.base import StanceEstimator
from train.metrics import compute_metrics
from train.models.card import ModelFileError, read_card, write_card
from train.models.fitting import current_fit_context
from train.schema import LABELS

class BaselineStance(StanceEstimator):
    """TF-IDF over character n-grams + logistic regression: the scikit-learn reference beside the transformers.

    Persistence is skops (a format made for safe scikit-learn persistence; mlflow already depends on it), not
    hand-written array dumps: safetensors.numpy 0.8 writes a Fortran-ordered array's memory as if it were C-ordered
    (safetensors issue #825) and LogisticRegression's coef_ is Fortran-ordered, so every baseline saved that way
    predicted garbage once reloaded. skops stores arrays with numpy's own .npy format (order recorded) and loads only
    types on an explicit list (TRUSTED_TYPES on top of skops' default scikit-learn/numpy/scipy types): nothing
    outside it is ever instantiated, and nothing is unpickled. tests/test_model_io.py fails if the ordering bug
    comes back through any path.
    """

    kind = "baseline"
    FILE = "baseline.skops"
    TRUSTED_TYPES: list[str] = []  # skops' defaults cover Pipeline, TfidfVectorizer, LogisticRegression and numpy

    def __init__(self, analyzer="char_wb", ngram_min=2, ngram_max=5, max_features=300000, C=4.0, class_weighting=True, seed=42,
                 class_prior: list[float] | None = None):
        self.class_prior = class_prior
        self.params = dict(analyzer=analyzer, ngram_min=ngram_min, ngram_max=ngram_max, max_features=max_features, C=C,
                           class_weighting=class_weighting, seed=seed)
        self.labels = list(LABELS)
        self.pipeline = None

    @classmethod
    def from_config(cls, cfg) -> "BaselineStance":
        m, t = cfg.model, cfg.train
        return cls(m.analyzer, m.ngram_min, m.ngram_max, m.max_features, m.C, t.class_weighting, t.seed, m.class_prior)

    def fit(self, texts, labels, eval_texts=None, eval_labels=None, eval_groups=None):
        """Fit on the texts; with a validation split, its metrics are reported once (step 1) to the fit context."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        p = self.params
        y = np.array([self.labels.index(l) for l in labels])
        self.pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(analyzer=p["analyzer"], ngram_range=(p["ngram_min"], p["ngram_max"]), lowercase=True,
                                      sublinear_tf=True, min_df=2, max_features=p["max_features"], dtype=np.float32)),
            ("clf", LogisticRegression(C=p["C"], max_iter=3000, random_state=p["seed"],
                                       class_weight="balanced" if p["class_weighting"] else None)),
        ]).fit(list(texts), y)
        self._set_train_prior(labels, weighted=p["class_weighting"])
        report = current_fit_context().report
        if report is not None and eval_texts is not None and len(eval_texts):
            proba = self.predict_proba(list(eval_texts))
            vm = compute_metrics([LABELS.index(l) for l in eval_labels], proba, list(eval_groups) if eval_groups is not None else None)
            report({f"val_{k}": v for k, v in vm.items()}, 1)
        return self

    def _raw_proba(self, texts, batch_size: int = 0) -> np.ndarray:
        proba = self.pipeline.predict_proba(list(texts))
        full = np.zeros((proba.shape[0], len(self.labels)), dtype=np.float32)
        full[:, self.pipeline.classes_] = proba  # a class missing from training keeps probability 0
        return full

    def save(self, path) -> Path:
        import skops.io as sio

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sio.dump(self.pipeline, path / self.FILE)
        write_card(path, {"kind": self.kind, "labels": self.labels, **self.params, **self._post_card()})
        return path

    @classmethod
    def load(cls, path, device=None, precision="auto", **_runtime):  # one runtime (scikit-learn): backend options do not apply
        import skops.io as sio

        path = Path(path)
        card = read_card(path)
        self = cls(**{k: card[k] for k in ("analyzer", "ngram_min", "ngram_max", "max_features", "C", "class_weighting", "seed")})
        self._load_post(card)
        file = path / cls.FILE
        if not file.is_file():
            old = " (saved by an older version whose safetensors arrays reload transposed: retrain it)" if (path / "baseline.safetensors").exists() else ""
            raise ModelFileError(f"{path}: no {cls.FILE}{old}")
        untrusted = [t for t in sio.get_untrusted_types(file=file) if t not in cls.TRUSTED_TYPES]
        if untrusted:
            raise ModelFileError(f"{file}: refusing to load types outside the trusted list: {', '.join(untrusted)}")
        self.pipeline = sio.load(file, trusted=cls.TRUSTED_TYPES)
        return self
