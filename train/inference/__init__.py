"""Batch inference with a loaded stance model: raw values -> prediction frame (`rows`, shared by every serving path),
and files -> files in resumable chunks (`readers`, `writers`, `batch`). Nothing here imports training code, MLflow or
a model class: the model arrives loaded (train.models.load_stance_model) and only `predict_proba` is called."""

from train.inference.batch import PredictOptions, PredictSummary, WorkLock, count_predictions, predict_file, predict_file_with
from train.inference.readers import FORMATS, count_rows, file_format
from train.inference.rows import (
    OUTPUT_COLUMNS,
    PRED_COLUMNS,
    RUN_COLUMNS,
    InferenceError,
    detect_languages,
    output_frame,
    predict_values,
    row_problem,
)

__all__ = [
    "FORMATS",
    "OUTPUT_COLUMNS",
    "PRED_COLUMNS",
    "RUN_COLUMNS",
    "InferenceError",
    "PredictOptions",
    "PredictSummary",
    "WorkLock",
    "count_predictions",
    "count_rows",
    "detect_languages",
    "file_format",
    "output_frame",
    "predict_file",
    "predict_file_with",
    "predict_values",
    "row_problem",
]
