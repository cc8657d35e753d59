"""The MLflow pyfunc wrapper, logged as "models from code" so that loading it unpickles nothing.

`mlflow.pyfunc.load_model(uri).predict(df)` takes a DataFrame with a `text` column (or a list of strings) and
returns the same prediction columns that `stance predict` adds to each row.
"""

from __future__ import annotations

import numpy as np

from train.schema import LABELS

PRED_COLUMNS = ["pred_stance", "pred_confidence"] + [f"prob_{name}" for name in LABELS]


def output_frame(proba: np.ndarray, labels=LABELS):
    import pandas as pd

    proba = np.asarray(proba, dtype=np.float64)
    out = pd.DataFrame({"pred_stance": [labels[i] for i in proba.argmax(1)] if len(proba) else [], "pred_confidence": proba.max(1) if len(proba) else []})
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = proba[:, i] if len(proba) else []
    return out


try:
    import mlflow
    from mlflow.pyfunc import PythonModel
except ImportError:  # the module is also imported outside MLflow (e.g. for output_frame)
    mlflow, PythonModel = None, object


class StancePyfunc(PythonModel):
    def load_context(self, context):
        from train.model import load_stance_model

        self.model = load_stance_model(context.artifacts["stance_model"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            column = "text" if "text" in model_input.columns else model_input.columns[0]
            texts = model_input[column].tolist()
        else:
            texts = list(model_input)
        batch_size = int((params or {}).get("batch_size", 64))
        return output_frame(self.model.predict_proba([str(t) for t in texts], batch_size=batch_size), self.model.labels)


if mlflow is not None:
    mlflow.models.set_model(StancePyfunc())
