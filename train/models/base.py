"""What the two stance models share: the estimator contract, temperature scaling, class-bias calibration and the
class-prior shift.

The contract (scikit-learn style): hyperparameters in the constructor (`from_config(cfg)` builds one from a run
config), data in `fit(texts, labels, eval_texts=None, eval_labels=None, eval_groups=None)`, learned state set only by
fit (then `calibrate` on held-out rows); `predict_proba`, `predict`, `save`, `load`. Where a fit reports progress and
where the transformer keeps checkpoints is not a parameter of either: see train.models.fitting.
"""

from __future__ import annotations

import numpy as np

from train.config.sections import CALIBRATION_METHODS

class StanceEstimator:
    """What the two models share (scikit-learn style): `predict_proba` is the model's own class probabilities
    (`_raw_proba`), then temperature scaling fitted on held-out rows by `calibrate` (so a confidence of 0.9 means
    right about 90% of the time) and, with `method="class_bias"`, per-class biases on the log-probabilities fitted with
    it (the model's systematic confusions on the kind of text it is calibrated on: on real statements it under-calls
    hostility), then, if the constructor was given a `class_prior`, a shift from the label mix the model learned under
    (`train_prior`, set by fit: uniform with class weighting) to the mix expected where it is applied (Bayes' rule on
    the odds: p'(y|x) ~ p(y|x) * prior(y) / train_prior(y)). All are stored in the card."""

    labels: list[str]
    temperature: float = 1.0
    class_bias: list[float] | None = None
    class_prior: list[float] | None = None
    train_prior: list[float] | None = None

    def _raw_proba(self, texts, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts, batch_size: int = 64) -> np.ndarray:
        return self.adjust(self._raw_proba(texts, batch_size))

    def adjust(self, raw: np.ndarray) -> np.ndarray:
        """The model's own probabilities -> what predict_proba returns (calibration, then the prior shift)."""
        return adjust_proba(raw, self.temperature, self.class_prior, self.train_prior, self.class_bias)

    def predict(self, texts, batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(1)]

    def calibrate(self, texts, labels, batch_size: int = 64, method: str = "temperature") -> float:
        """Fit the temperature (and with method "class_bias" the class biases) on held-out labeled rows: the validation
        split or a labeled sample of the text the model will score, never the evaluation rows. Returns the temperature."""
        y = np.array([self.labels.index(l) for l in labels])
        raw = self._raw_proba(list(texts), batch_size)
        if method == "class_bias":
            self.temperature, bias = fit_class_bias(raw, y)
            self.class_bias = [float(b) for b in bias]
        elif method == "temperature":
            self.temperature, self.class_bias = fit_temperature(raw, y), None
        else:
            raise ValueError(f"calibration method {method!r} is not one of {', '.join(CALIBRATION_METHODS)}")
        return self.temperature

    def _set_train_prior(self, labels, weighted: bool) -> None:
        if weighted:  # class-weighted loss: the model learned as if every class were equally common
            self.train_prior = [1.0 / len(self.labels)] * len(self.labels)
        else:
            counts = np.array([list(labels).count(l) for l in self.labels], dtype=float)
            self.train_prior = (counts / counts.sum()).tolist()

    def _post_card(self) -> dict:
        post = {"temperature": self.temperature, "class_prior": self.class_prior, "train_prior": self.train_prior}
        return post | ({"class_bias": self.class_bias} if self.class_bias is not None else {})

    def _load_post(self, card: dict) -> None:
        self.temperature = float(card.get("temperature", 1.0))
        self.class_bias = card.get("class_bias")
        self.class_prior, self.train_prior = card.get("class_prior"), card.get("train_prior")


def adjust_proba(proba: np.ndarray, temperature: float = 1.0, prior=None, train_prior=None, bias=None) -> np.ndarray:
    """Temperature scaling, class biases and prior shift on the log-probabilities; the identity (bit for bit) when none
    is set."""
    if temperature == 1.0 and prior is None and bias is None:
        return proba
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)) / temperature
    if bias is not None:
        logp = logp + np.asarray(bias, dtype=np.float64)
    if prior is not None:
        base = np.asarray(train_prior if train_prior is not None else [1.0 / proba.shape[1]] * proba.shape[1])
        logp = logp + np.log(np.asarray(prior, dtype=np.float64)) - np.log(base)
    logp -= logp.max(1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of the labels (Guo et al. 2017), in [0.05, 20]."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))

    def nll(log_t):
        z = logp / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


def fit_class_bias(proba: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(temperature, class biases) minimising the class-balanced negative log-likelihood of the labels, on the logits
    log(p) / T + b with b[0] = 0. Each class's rows weigh 1 / (its count), so the biases correct what the model gets
    wrong class by class, not the label mix of the rows they are fitted on (a sample that is 70% neutral does not push
    everything toward neutral). Every class needs rows: an absent class's bias would run to the lower bound, so
    callers refuse such samples (train.data.check_calibration_labels)."""
    from scipy.optimize import minimize

    y = np.asarray(y)
    if len(y) == 0:
        return 1.0, np.zeros(proba.shape[1])
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))
    k = logp.shape[1]
    counts = np.bincount(y, minlength=k)
    w = 1.0 / counts[y]
    rows = np.arange(len(y))

    def nll(params):
        z = logp / np.exp(params[0]) + np.concatenate([[0.0], params[1:]])
        z = z - z.max(1, keepdims=True)
        return float(-(w * (z[rows, y] - np.log(np.exp(z).sum(1)))).sum() / w.sum())

    bounds = [(np.log(0.05), np.log(20.0))] + [(-5.0, 5.0)] * (k - 1)
    x = minimize(nll, np.zeros(k), method="L-BFGS-B", bounds=bounds).x
    return float(np.exp(x[0])), np.concatenate([[0.0], x[1:]])
