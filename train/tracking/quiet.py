"""The library messages a training run silences, each by its exact text, with why it is harmless. Anything not listed
here (a real warning from torch, transformers, scikit-learn, pandas or MLflow) is still printed."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

# (category, start of the message as a regex, why it says nothing about the run); DeprecationWarning covers pandas'
# Pandas4Warning: notices to MLflow's own code about pandas 4; MLflow's to act on, not a researcher's
HARMLESS_WARNINGS = (
    (
        UserWarning,
        r"The specified dataset source can be interpreted in multiple ways",
        "mlflow.data.from_pandas with a local path: both candidate sources are LocalArtifactDatasetSource",
    ),
    (
        UserWarning,
        r".*Add type hints to the `predict` method",
        "our pyfunc's signature is set explicitly (packaging.log_stance_model) and it checks its input itself",
    ),
    (
        UserWarning,
        r".*An input example was not provided when logging the model",
        "the signature is inferred from training texts; an input example would only duplicate it",
    ),
    (
        DeprecationWarning,
        r"Starting with pandas version 4.0 all arguments of all will be keyword-only",
        "inside mlflow.data's digest of a logged dataset: MLflow's call, unchanged behaviour under pandas 3",
    ),
    (
        DeprecationWarning,
        r"For backward compatibility, 'str' dtypes are included by select_dtypes",
        "inside MlflowClient.log_table: MLflow's call, unchanged behaviour under pandas 3",
    ),
)
# logger name -> starts of log messages (logging, not warnings) that are bookkeeping, not news
HARMLESS_LOG_MESSAGES = {
    # a fresh store's tables: said once per new MLflow store, at every first run of a project
    "mlflow.store.db.utils": ("Creating initial MLflow database tables", "Updating database tables"),
    "alembic.runtime.migration": ("Context impl", "Will assume", "Running upgrade"),
    # checkpoints saved within a second of each other (tiny data): the Trainer then orders them by step, which is right
    "transformers.trainer_utils": ("mtime may not be reliable",),
    # MLflow 3 registers the run's logged model (models:/m-...) rather than the runs:/ path: the same files
    "mlflow.tracking._model_registry.fluent": ("Run with id",),
}


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]):
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.starts)


def quiet_training() -> None:
    """Silence the known-harmless messages above and the libraries' progress bars (weights loading, model shards,
    artifact downloads); our own per-epoch table and summary say what happened. Idempotent."""
    for category, message, _why in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, starts in HARMLESS_LOG_MESSAGES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(starts))
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        return
    hf_logging.disable_progress_bar()


def _harmless(w: warnings.WarningMessage) -> bool:
    text = str(w.message)
    return any(issubclass(w.category, c) and re.match(m, text, re.I) for c, m, _why in HARMLESS_WARNINGS)


@contextlib.contextmanager
def harmless_warnings_dropped():
    """For calls that set their own warning filters (MLflow's log_model shows every UserWarning "once", ahead of any
    filter of ours): record their warnings and show again only those not listed above."""
    with warnings.catch_warnings(record=True) as caught:  # the filters in force still decide what is recorded
        yield
    for w in caught:
        if not _harmless(w):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
