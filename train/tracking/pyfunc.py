"""The MLflow pyfunc wrapper, logged as "models from code" so that loading it unpickles nothing.

`mlflow.pyfunc.load_model(uri).predict(df)` takes a DataFrame with a `text` column (or a list of values) and returns
the same prediction columns that `stance predict` adds to each row (OUTPUT_COLUMNS), bad rows included: both go
through `train.inference.predict_values`. The same holds for `mlflow models serve` and `mlflow.pyfunc.spark_udf`.
This file is the pyfunc's code (train.tracking.packaging logs it); the train package travels with it.
"""

from __future__ import annotations

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


class StancePyfunc(PythonModel):
    def load_context(self, context):
        from train.models import load_stance_model
        from train.runtime import set_threads

        self.model = load_stance_model(context.artifacts["stance_model"])
        if getattr(self.model, "device", "cpu") == "cpu":
            set_threads()

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from train.inference.rows import predict_values

        if isinstance(model_input, pd.DataFrame):
            column = "text" if "text" in model_input.columns else model_input.columns[0]
            values = model_input[column].tolist()
        elif isinstance(model_input, (pd.Series, np.ndarray)):
            values = list(model_input)
        elif isinstance(model_input, (str, dict)):
            values = [model_input.get("text") if isinstance(model_input, dict) else model_input]
        else:
            values = list(model_input)
        batch_size = int((params or {}).get("batch_size", 64))
        out = predict_values(self.model, values, batch_size=batch_size)
        # bad rows' empty probabilities as None, not NaN: the model server's JSON must stay valid JSON
        return out.astype(object).where(out.notna(), None)


mlflow.models.set_model(StancePyfunc())
