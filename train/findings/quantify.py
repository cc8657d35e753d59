"""Label shares corrected for classifier error (quantification), with bootstrap intervals.

Counting predicted labels ("classify and count") is biased whenever the classifier errs and the collection's label
mix differs from the one its errors were measured on: a model that calls 20% of neutral statements hostile reports
hostility even in a collection with none. The corrections come from quapy (Moreo, Esuli, Sebastiani):

- `cc`   classify and count (the naive share, always reported as `share_naive`)
- `pcc`  probabilistic classify and count: the mean of the predicted probabilities
- `acc`  adjusted classify and count: solve  observed = M @ true  for `true`, with M[i, j] = P(predicted i | true j)
         measured on labeled rows scored by the same model
- `pacc` the same with probabilities instead of hard labels (M from mean probabilities per true class)
- `emq`  EM prior adjustment (Saerens-Latinne-Decaestecker), starting from the mean probabilities of the labeled rows

quapy's quantifiers wrap a classifier; ours has already scored every row, so the "classifier" here is an identity on
the probability matrix (`_Scored`) and the quantifiers are fitted with fit_classifier=False.

The interval covers both sources of error: each bootstrap replicate resamples the labeled rows the correction is
fitted on (the correction's own uncertainty, often the larger one: a few hundred labeled rows) AND the statements
of the group, then takes the 2.5th and 97.5th percentiles of the replicates' estimates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from train.schema import LABELS

METHODS = ("cc", "pcc", "acc", "pacc", "emq")
DEFAULT_METHOD = "pacc"
# quapy's "minimize" (a constrained least-squares fit) takes ~13 ms per estimate, too slow for 200 bootstrap
# replicates of thousands of groups; "exact-cc" solves the 3x3 system (~0.1 ms), clips negatives and renormalises,
# and falls back to the naive count when the misclassification matrix is singular
SOLVER = "exact-cc"
SMALL_GROUP = 30  # fewer scored statements than this: flagged `small_group` (the interval says how little is known)


def _scored_classifier():
    from sklearn.base import BaseEstimator, ClassifierMixin

    class _Scored(ClassifierMixin, BaseEstimator):
        """The model's predictions, already computed: X is the (rows x classes) probability matrix."""

        def __init__(self):
            self.classes_ = np.arange(len(LABELS))

        def fit(self, X, y):
            return self

        def predict_proba(self, X):
            return np.asarray(X, dtype=np.float64)

        def predict(self, X):
            return np.asarray(X).argmax(1)

    return _Scored()


def fit_quantifier(method: str, proba: np.ndarray, y: np.ndarray):
    """A quapy quantifier for `method` fitted on labeled rows (`proba` as scored by the model, `y` class indices)."""
    from quapy.method.aggregative import ACC, CC, EMQ, PACC, PCC

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y)
    with warnings.catch_warnings():  # quapy warns that val_split is ignored for a fitted classifier: that is the point
        warnings.simplefilter("ignore")
        if method == "cc":
            q = CC(_scored_classifier(), fit_classifier=False)
        elif method == "pcc":
            q = PCC(_scored_classifier(), fit_classifier=False)
        elif method == "acc":
            q = ACC(_scored_classifier(), fit_classifier=False, val_split=None, solver=SOLVER)
        elif method == "pacc":
            q = PACC(_scored_classifier(), fit_classifier=False, val_split=None, solver=SOLVER)
        else:
            # exact_train_prev=False: EM starts from the prior the probabilities themselves express on the labeled
            # rows (their mean), not from the labeled rows' label mix, which the model's probabilities never saw
            q = EMQ(_scored_classifier(), fit_classifier=False, exact_train_prev=False)
        q.fit(proba, y)
    return q


def estimate(q, method: str, proba: np.ndarray) -> np.ndarray:
    """Shares (one per label, summing to 1) of one group's rows."""
    proba = np.asarray(proba, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = q.aggregate(proba.argmax(1) if method in ("cc", "acc") else proba)
    est = np.clip(np.asarray(est, dtype=np.float64), 0.0, None)
    return est / est.sum() if est.sum() > 0 else np.full(len(LABELS), 1.0 / len(LABELS))


@dataclass
class Correction:
    """A method fitted on labeled rows, plus `n_boot` refits on resamples of those rows (shared by every group, so
    the groups' intervals reflect one and the same uncertainty of the correction)."""

    method: str
    fitted_on: str  # where the labeled rows came from, said in every output
    proba: np.ndarray
    y: np.ndarray
    n_boot: int = 200
    seed: int = 0
    full: object = None
    replicates: list = field(default_factory=list)

    def __post_init__(self):
        self.proba = np.asarray(self.proba, dtype=np.float64)
        self.y = np.asarray(self.y)
        missing = [LABELS[i] for i in range(len(LABELS)) if not (self.y == i).any()]
        if missing and self.method in ("acc", "pacc"):
            raise ValueError(
                f"{self.fitted_on}: no labeled row of class {', '.join(missing)}: {self.method} cannot measure how the "
                "model errs on it; add labeled rows of every class or use --method pcc"
            )
        self.full = fit_quantifier(self.method, self.proba, self.y)
        rng = np.random.default_rng(self.seed)
        n = len(self.y)
        for _ in range(self.n_boot):
            idx = rng.integers(0, n, n)
            # a resample that lost a whole class cannot fit acc/pacc's matrix: draw again (rare unless a class is tiny)
            for _ in range(20):
                if len(np.unique(self.y[idx])) == len(np.unique(self.y)):
                    break
                idx = rng.integers(0, n, n)
            self.replicates.append(fit_quantifier(self.method, self.proba[idx], self.y[idx]))


@dataclass
class GroupEstimate:
    n: int
    naive: np.ndarray  # counted predicted labels
    share: np.ndarray  # corrected
    low: np.ndarray
    high: np.ndarray


def estimate_group(corr: Correction, proba: np.ndarray, seed: int = 0) -> GroupEstimate:
    """Naive and corrected shares of one group's scored rows, and the 95% bootstrap interval of the corrected one."""
    proba = np.asarray(proba, dtype=np.float32)
    n = len(proba)
    k = len(LABELS)
    if n == 0:
        nan = np.full(k, np.nan)
        return GroupEstimate(0, nan, nan, nan, nan)
    naive = np.bincount(proba.argmax(1), minlength=k) / n
    share = estimate(corr.full, corr.method, proba)
    rng = np.random.default_rng(seed)
    boots = np.empty((len(corr.replicates), k))
    for b, q in enumerate(corr.replicates):
        boots[b] = estimate(q, corr.method, proba[rng.integers(0, n, n)])
    low, high = np.percentile(boots, [2.5, 97.5], axis=0) if len(boots) else (share, share)
    return GroupEstimate(n, naive, share, np.minimum(low, share), np.maximum(high, share))
