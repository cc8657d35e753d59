"""The fit context: how an estimator's `fit` reports progress and where it may keep state, set by the caller.

The estimator contract is scikit-learn's: hyperparameters go to the constructor, data to
`fit(texts, labels, eval_texts=None, eval_labels=None, eval_groups=None)`, and learned state is set only by fit.
What is neither (where per-epoch metrics go, where the transformer's Trainer writes checkpoints, whether it resumes
from them, extra `transformers.TrainerCallback`s) is not part of any estimator's signature: the pipeline sets it
around the call,

    with fit_context(report=log_epoch_metrics, checkpoint_dir=out_dir, resume=resume):
        model.fit(texts, labels, val_texts, val_labels, val_languages)

and each estimator reads what concerns it: both report their validation metrics through `report` (the transformer
once per epoch, the baseline once, as step 1); only the transformer reads the checkpoint and Trainer settings. Outside
such a block fit runs with the defaults (no reporting, checkpoints under outputs/run, no resume).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class FitContext:
    report: Callable[[dict[str, float], int], None] | None = None  # (metrics, epoch): train_loss, val_*, learning_rate
    checkpoint_dir: Path = Path("outputs/run")  # the transformer's Trainer checkpoints (removed by the caller when done)
    resume: bool = False  # continue from the newest complete checkpoint in checkpoint_dir
    trainer_callbacks: tuple = field(default_factory=tuple)  # extra transformers.TrainerCallback objects


_CURRENT: contextvars.ContextVar[FitContext] = contextvars.ContextVar("stance_fit_context", default=FitContext())


@contextlib.contextmanager
def fit_context(**settings):
    """Run the block's fits with these FitContext settings."""
    token = _CURRENT.set(FitContext(**settings))
    try:
        yield _CURRENT.get()
    finally:
        _CURRENT.reset(token)


def current_fit_context() -> FitContext:
    return _CURRENT.get()
