"""`stance predict --engine spark`: the file scored by pyspark through the logged pyfunc (mlflow.pyfunc.spark_udf).

Spark recipe (`--engine spark`, also usable from any PySpark job):

    import mlflow.pyfunc
    from pyspark.sql import functions as F, types as T
    fields = [T.StructField(c, T.StringType() if c in ("pred_stance", "pred_error") else T.DoubleType())
              for c in OUTPUT_COLUMNS]
    predict = mlflow.pyfunc.spark_udf(spark, "models:/stance@champion", result_type=T.StructType(fields),
                                      env_manager="local")
    scored = df.withColumn("pred", predict(F.struct(F.col("text")))).select("*", "pred.*").drop("pred")

The UDF runs the same pyfunc (and so the same `predict_values`) as the CLI and the model server, bad rows included.
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

from train.inference.batch import LANGUAGE_COLUMNS, PredictSummary, count_predictions
from train.inference.readers import file_format, input_columns, iter_chunks
from train.inference.rows import OUTPUT_COLUMNS, InferenceError, detect_languages
from train.schema import LABELS
from train.tracking.packaging import save_stance_pyfunc
from train.tracking.registry import registered_version, stance_dir_in
from train.tracking.store import setup_tracking


def predict_with_spark(model, input, output, text_column, master, detect_language, tmp, encoding="utf-8"):
    """The recipe from the module docstring, reading and writing the same formats as the local engine."""
    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    in_fmt, out_fmt = file_format(input, "input"), file_format(output, "output")
    if not Path(input).is_file():
        raise InferenceError(f"{input}: input file not found")
    columns = input_columns(Path(input), in_fmt, encoding)
    if text_column not in columns:
        raise InferenceError(f"{input}: no column {text_column!r}; available columns: {', '.join(columns) or '(none)'}")
    pyfunc_uri, uri, version = _pyfunc_uri(model, Path(tmp))
    start = time.perf_counter()
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")  # pandas 3 notice, once per UDF
    spark = (
        SparkSession.builder.master(master)
        .appName("stance-predict")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    readers = {
        "parquet": lambda: spark.read.parquet(str(input)),
        "csv": lambda: spark.read.csv(str(input), header=True, multiLine=True, escape='"', encoding=encoding),
        "jsonl": lambda: spark.read.json(str(input)),
    }
    df = readers[in_fmt]().withColumn("__row", F.monotonically_increasing_id())
    fields = [T.StructField(c, T.StringType() if c in ("pred_stance", "pred_error") else T.DoubleType()) for c in OUTPUT_COLUMNS]
    predict = mlflow.pyfunc.spark_udf(spark, pyfunc_uri, result_type=T.StructType(fields), env_manager="local")
    originals = [c for c in df.columns if c != "__row" and c not in OUTPUT_COLUMNS]
    scored = df.withColumn("__pred", predict(F.struct(F.col(f"`{text_column}`").alias("text"))))
    cols = [F.col(f"`{c}`") for c in originals] + [F.col(f"__pred.{c}").alias(c) for c in OUTPUT_COLUMNS if c != "pred_stance"]
    # spark_udf casts string results with astype(str), so a bad row's empty stance arrives as "None": keep labels only
    stance = F.col("__pred.pred_stance")
    cols.insert(len(originals), F.when(stance.isin(*LABELS), stance).alias("pred_stance"))
    # the pyfunc UDF does not report truncation: the column is there (same columns as the local engine) but null, unknown
    cols.append(F.lit(None).cast("boolean").alias("truncated"))
    detect = not any(c in columns for c in LANGUAGE_COLUMNS) if detect_language is None else detect_language
    if detect:
        cols.append(_language_udf()(F.col(f"`{text_column}`").cast("string")).alias("detected_language"))
    cols += [F.lit(uri).alias("model_uri"), F.lit(version).alias("model_version")]
    result = scored.select(*cols, "__row").orderBy("__row").drop("__row").coalesce(1)
    out_dir = Path(tmp) / "spark-out"
    writer = result.write.mode("overwrite")
    {
        "parquet": lambda: writer.parquet(str(out_dir)),
        "csv": lambda: writer.csv(str(out_dir), header=True, escape='"'),
        "jsonl": lambda: writer.option("ignoreNullFields", "false").json(str(out_dir)),
    }[out_fmt]()
    part = next(p for p in sorted(out_dir.glob("part-*")) if not p.name.endswith(".crc"))
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    tmp_out = Path(output).with_name(f".{Path(output).name}.tmp-{os.getpid()}")
    os.replace(part, tmp_out)
    os.replace(tmp_out, output)
    summary = PredictSummary(chunks=1, chunks_computed=1)
    for chunk, _ in iter_chunks(Path(output), out_fmt, 50000):  # counts from the written file: no second model pass
        count_predictions(summary, chunk["pred_stance"].tolist(), chunk["pred_error"].fillna("").tolist())
    summary.seconds = time.perf_counter() - start
    return summary, uri, version


def _language_udf():
    from pyspark.sql.functions import pandas_udf
    from pyspark.util import PythonEvalType

    def detected_language(texts):
        import pandas as pd

        return pd.Series(detect_languages(texts.tolist()), dtype=object)

    # the eval type is given explicitly: type hints are strings under `from __future__ import annotations`
    return pandas_udf(detected_language, "string", PythonEvalType.SQL_SCALAR_PANDAS_UDF)


def _pyfunc_uri(model: str, tmp: Path) -> tuple[str, str, str]:
    """An MLflow pyfunc for the UDF: the URI or MLflow directory as given, or a stance model directory wrapped on the fly."""
    local = Path(model)
    if not local.exists():
        setup_tracking()
        return model, model, registered_version(model)
    if (local / "MLmodel").is_file():
        stance_dir_in(local)
        return str(local.resolve()), str(local.resolve()), ""
    wrapped = save_stance_pyfunc(stance_dir_in(local), tmp / "pyfunc")
    return str(wrapped), str(local.resolve()), ""
