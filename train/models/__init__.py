"""The two stance models behind one estimator interface (train.models.base.StanceEstimator).

`TransformerStance` fine-tunes any Hugging Face encoder with a pooled linear head; `BaselineStance` is TF-IDF over
character n-grams with logistic regression. Everything downstream (the pipeline, evaluation, batch inference, the
MLflow pyfunc) only uses `fit / predict_proba / predict / calibrate / save / load`, so the two are interchangeable:
`ESTIMATORS[cfg.model.kind].from_config(cfg)` builds either, `load_stance_model` loads either.

Modules: base (the contract, calibration, prior shift), card (the saved directory's card and digests), transformer,
baseline, fitting (the fit context), trainer (the transformer's Trainer loop, imported only by fit), onnx (the ONNX
Runtime backend), e5format / e5convert (the offline encoder).
"""

from __future__ import annotations

from pathlib import Path

from train.models.base import CALIBRATION_METHODS, StanceEstimator, adjust_proba, fit_class_bias, fit_temperature
from train.models.baseline import BaselineStance
from train.models.card import MODEL_CARD, POOLINGS, ModelFileError, card_kind, file_digests, model_fingerprint, read_card, write_card
from train.models.transformer import BackendError, TransformerStance

ESTIMATORS = {"transformer": TransformerStance, "baseline": BaselineStance}


def estimator_from_config(cfg) -> StanceEstimator:
    """An unfitted estimator of the config's model.kind with the config's hyperparameters."""
    return ESTIMATORS[cfg.model.kind].from_config(cfg)


def load_stance_model(path, device: str | None = None, precision: str = "auto", backend: str = "torch", int8: bool = False,
                      threads: int = 0) -> StanceEstimator:
    """Load either kind of saved model from a local directory. The runtime is chosen here: backend "onnx" (CPU) runs a
    transformer on ONNX Runtime (int8: quantized weights); the baseline has one runtime and ignores both."""
    path = Path(path)
    if not (path / MODEL_CARD).is_file():
        raise FileNotFoundError(f"{path}: not a stance model directory (no {MODEL_CARD})")
    return ESTIMATORS[card_kind(path)].load(path, device=device, precision=precision, backend=backend, int8=int8, threads=threads)


__all__ = ["ESTIMATORS", "MODEL_CARD", "POOLINGS", "BackendError", "BaselineStance", "ModelFileError", "StanceEstimator",
           "CALIBRATION_METHODS", "TransformerStance", "adjust_proba", "fit_class_bias", "estimator_from_config", "file_digests", "fit_temperature", "load_stance_model", "model_fingerprint",
           "read_card", "write_card"]
