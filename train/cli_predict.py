"""`stance predict`: batch inference over a CSV / JSONL / Parquet file (see train/inference.py for the file contract).

MODEL is a local directory (a saved stance model with stance_model.json, or an MLflow model directory) or an MLflow
model URI (runs:/<run_id>/model, models:/<name>/<version>, models:/<name>@<alias>). MLflow models are downloaded and
their stance model directory (artifacts/<...> inside the pyfunc) is loaded directly, so the length-sorted, dynamically
padded engine runs without the pyfunc layer in between.

Spark recipe (`--engine spark`, also usable from any PySpark job):

    import mlflow.pyfunc
    from pyspark.sql import functions as F, types as T
    fields = [T.StructField(c, T.StringType() if c in ("pred_stance", "pred_error") else T.DoubleType())
              for c in OUTPUT_COLUMNS]
    predict = mlflow.pyfunc.spark_udf(spark, "models:/stance@champion", result_type=T.StructType(fields),
                                      env_manager="local")
    scored = df.withColumn("pred", predict(F.struct(F.col("text")))).select("*", "pred.*").drop("pred")

The UDF runs the same pyfunc (and so the same `predict_values`) as the CLI and the model server, bad rows included.
Only typer is imported at module level: `stance --help` must stay instant.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

INFERENCE_EXPERIMENT = "stance-inference"


def _fail(message: str, code: int = 2):
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def predict_cmd(
    model: str = typer.Option(..., "--model", "-m", help="MLflow model URI (runs:/ID/model, models:/NAME/VERSION, models:/NAME@ALIAS) or a local model directory."),
    input: Path = typer.Option(..., "--input", "-i", help="CSV, JSONL or Parquet file (by extension)."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet, CSV or JSONL file (by extension); written atomically."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the statements."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of a CSV input (e.g. latin-1, cp1252, utf-16); JSONL is always UTF-8. A UTF-8 byte-order mark is accepted."),
    batch_size: int = typer.Option(0, "--batch-size", help="Rows per forward pass (0: 64 on CPU, 256 on GPU)."),
    chunk_size: int = typer.Option(5000, "--chunk-size", help="Rows read, predicted and written at a time (bounds memory; unit of --resume)."),
    detect_language: Optional[bool] = typer.Option(None, "--detect-language/--no-detect-language", help="Add detected_language (default: only when the input has no language column)."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same output, reusing its finished chunks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard an interrupted run's finished chunks and start over."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on a GPU that supports it, else fp32), fp32, bf16, fp16."),
    threads: int = typer.Option(0, "--threads", help="CPU threads for the model (0: one per core)."),
    backend: str = typer.Option("torch", "--backend", help="CPU runtime for transformer models: torch, or onnx (ONNX Runtime with fused kernels: same predictions, faster; exported once per model and cached; needs the [onnx] extra). The baseline ignores it."),
    int8: bool = typer.Option(False, "--int8", help="CPU only, implies --backend onnx: int8 weights in the ONNX graph (faster, approximate: 96% agreement with fp32 on the default model's test split)."),
    log_mlflow: bool = typer.Option(False, "--log-mlflow", help=f"Log the run (input digest, counts, label distribution, rows/s) to the MLflow experiment '{INFERENCE_EXPERIMENT}'."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or spark (pyspark + mlflow.pyfunc.spark_udf)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="With --engine spark: the Spark master URL."),
):
    """Predict stance for every row of a file; every input row comes out, in order, with its columns plus predictions."""
    from train.inference import InferenceError

    if engine not in ("local", "spark"):
        _fail(f"--engine: {engine!r} is not one of local, spark")
    if device not in ("auto", "cpu", "cuda"):
        _fail(f"--device: {device!r} is not one of auto, cpu, cuda")
    if backend not in ("torch", "onnx"):
        _fail(f"--backend: {backend!r} is not one of torch, onnx")
    if int8:
        backend = "onnx"  # torch's own dynamic quantization cost 10 macro-F1 points on the default model; ORT's per-channel int8 cost 1.3
    if backend == "onnx" and engine == "spark":
        _fail("--backend onnx and --int8 run with --engine local (the Spark UDF runs the logged pyfunc as it is)")
    _quiet_libraries()
    run = _start_mlflow_run(model, input, output, text_column, chunk_size, engine, backend, int8) if log_mlflow else None
    try:
        with tempfile.TemporaryDirectory(prefix="stance-predict-") as tmp:
            if engine == "spark":
                summary, uri, version = predict_with_spark(model, input, output, text_column, spark_master, detect_language, tmp,
                                                           encoding)
            else:
                summary, uri, version = _predict_local(model, input, output, text_column, batch_size, chunk_size, detect_language,
                                                       resume, overwrite, device, precision, threads, int8, tmp, backend, encoding)
    except InferenceError as e:
        _end_mlflow_run(run, None, "FAILED", str(e))
        _fail(str(e))
    except BaseException as e:
        _end_mlflow_run(run, None, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED", repr(e))
        raise
    reused = f", {summary.chunks_reused} reused from the interrupted run" if summary.chunks_reused else ""
    typer.echo(f"{output}: {summary.rows} rows ({summary.bad_rows} bad) in {summary.seconds:.1f}s, {summary.rows_per_s:.0f} rows/s; "
               f"chunks: {summary.chunks_computed} computed{reused}", err=True)
    if summary.errors:
        typer.echo("bad rows: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.errors.items(), key=lambda kv: -kv[1])), err=True)
    _end_mlflow_run(run, (summary, uri, version, input), "FINISHED")


def _quiet_libraries() -> None:
    """Keep stderr for our progress: no weight-loading bars or over-length warnings (long rows are reported per row)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def _predict_local(model, input, output, text_column, batch_size, chunk_size, detect_language, resume, overwrite, device, precision,
                   threads, int8, tmp, backend="torch", encoding="utf-8"):
    from train.inference import WorkLock, predict_file

    WorkLock.check_free(Path(output))  # another run on this output: say so before downloading and loading a model
    stance, uri, version, dev, model_dir = load_for_predict(model, Path(tmp), device, precision, threads, backend, int8)
    batch = batch_size or (256 if dev == "cuda" else 64)
    # everything else that changes the predictions: parts of a run with other values are never resumed into this one
    options = {"model_version": version, "model_files": _model_fingerprint(model_dir), "device": dev, "precision": precision,
               "backend": backend if stance.kind == "transformer" else "", "int8": int8 and stance.kind == "transformer"}
    with progress_reporter(input) as progress:
        summary = predict_file(stance, input, output, text_column, model_uri=uri, model_version=version, batch_size=batch,
                               chunk_rows=chunk_size, detect_language=detect_language, resume=resume, overwrite=overwrite,
                               progress=progress, encoding=encoding, options=options)
    return summary, uri, version


def _model_fingerprint(model_dir: Path) -> str:
    """A digest of the model's files, so that a model retrained into the same directory (same names, same sizes) never
    resumes another model's parts. The card lists every file's sha256 (checked when the model was loaded), so its
    own digest stands for them all; a directory saved before cards held digests is hashed in full."""
    import hashlib
    import json

    from train.hashing import sha256_file
    from train.model import MODEL_CARD, file_digests

    card = Path(model_dir) / MODEL_CARD
    if "files" in json.loads(card.read_text(encoding="utf-8")):
        return sha256_file(card)[:16]
    return hashlib.sha256(json.dumps(file_digests(Path(model_dir)), sort_keys=True).encode()).hexdigest()[:16]


# -- model resolution -------------------------------------------------------------------------------------------------

def load_for_predict(model: str, tmp: Path, device="auto", precision="auto", threads=0, backend="torch", int8=False):
    """The one way `stance predict` (and `stance runs verify`, which must test exactly this path) gets a model:
    resolve the URI or directory, pick the device, load, attach the backend.
    Returns (model, uri, version, device, local model directory)."""
    from train.inference import InferenceError
    from train.model import load_stance_model, pick_device, set_threads

    model_dir, uri, version = resolve_model(model, tmp)
    dev = ("cpu" if backend == "onnx" else pick_device()) if device == "auto" else device
    if dev == "cpu":
        set_threads(threads)
    try:
        stance = load_stance_model(model_dir, device=dev, precision=precision)
    except (OSError, ValueError, KeyError) as e:
        raise InferenceError(f"{model}: cannot load the model: {e}") from e
    if backend == "onnx" and stance.kind == "transformer":
        if dev != "cpu":
            raise InferenceError("--backend onnx and --int8 are for the CPU; on a GPU use the default torch backend (bf16)")
        try:
            stance.use_onnx(model_dir, int8=int8, threads=threads)
        except RuntimeError as e:
            raise InferenceError(str(e)) from e
    return stance, uri, version, dev, model_dir


def stance_dir_in(path: Path) -> Path:
    """The stance model directory inside `path`: itself, or the pyfunc's `stance_model` artifact of an MLflow model."""
    from train.inference import InferenceError
    from train.model import MODEL_CARD

    if (path / MODEL_CARD).is_file():
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        import yaml

        flavor = (yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}).get("flavors", {}).get("python_function", {})
        rel = (flavor.get("artifacts") or {}).get("stance_model", {}).get("path")
        if rel:
            target = (path / rel).resolve()
            # a tampered MLmodel must not point the loader outside the model directory (../, absolute paths, links)
            if not target.is_relative_to(path.resolve()):
                raise InferenceError(f"{mlmodel}: artifact path {rel!r} leads outside the model directory")
            if (target / MODEL_CARD).is_file():
                return target
        raise InferenceError(f"{path}: an MLflow model without a stance_model artifact (not logged by `stance train`)")
    raise InferenceError(f"{path}: neither a stance model directory ({MODEL_CARD}) nor an MLflow model directory (MLmodel)")


def resolve_model(spec: str, download_to: Path) -> tuple[Path, str, str]:
    """(local stance model dir, model URI to record, registered version or "")."""
    from train.inference import InferenceError

    local = Path(spec)
    if local.exists():
        return stance_dir_in(local), str(local.resolve()), ""
    if not spec.startswith(("runs:/", "models:/")) and "://" not in spec:
        raise InferenceError(f"{spec}: no such model directory, and not an MLflow model URI (runs:/..., models:/...)")
    import mlflow
    from mlflow.exceptions import MlflowException

    from train.tracking import describe_store, setup_tracking

    setup_tracking()
    try:
        path = Path(mlflow.artifacts.download_artifacts(artifact_uri=spec, dst_path=str(download_to)))
        version = registered_version(spec)
    except MlflowException as e:
        raise InferenceError(f"{spec}: cannot fetch the model from the MLflow store {describe_store()}: {e.message}") from e
    return stance_dir_in(path), spec, version


def registered_version(uri: str) -> str:
    """The model-registry version behind a URI: explicit, via an alias/stage, or the registration of a run's model."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if uri.startswith("models:/"):
        ref = uri[len("models:/"):].strip("/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return str(client.get_model_version_by_alias(name, alias.split("/")[0]).version)
        name, _, rest = ref.partition("/")
        tag = rest.split("/")[0]
        if tag.isdigit():
            return tag
        if tag and not name.startswith("m-"):
            versions = client.get_latest_versions(name, None if tag.lower() == "latest" else [tag])
            return str(max(int(v.version) for v in versions)) if versions else ""
        return ""
    if uri.startswith("runs:/"):
        run_id = uri[len("runs:/"):].split("/")[0]
        versions = client.search_model_versions(f"run_id='{run_id}'")
        return str(max(int(v.version) for v in versions)) if versions else ""
    return ""


# -- progress -----------------------------------------------------------------------------------------------------------

class progress_reporter:
    """A rich progress bar (rows, rows/s, ETA) on a terminal; otherwise a log line every `every` chunks."""

    def __init__(self, input_path: Path, every: int = 10):
        self.input_path, self.every, self.bar, self.calls = Path(input_path), every, None, 0

    def __enter__(self):
        from train.inference import count_rows, file_format

        try:
            self.total = count_rows(self.input_path, file_format(self.input_path, "input"))
        except Exception:  # noqa: BLE001 - the run itself reports unreadable inputs clearly
            self.total = None
        self.start = time.perf_counter()
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("predict"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]} rows/s"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), transient=False)
            self.bar.start()
            self.task = self.bar.add_task("predict", total=self.total, rate="-")
        return self

    def __call__(self, done: int, summary) -> None:
        self.calls += 1
        rate = done / max(1e-9, time.perf_counter() - self.start)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{rate:,.0f}")
        elif self.calls % self.every == 0:
            eta = f", ETA {_hms((self.total - done) / rate)}" if self.total and rate > 0 and self.total > done else ""
            of = f"/{self.total}" if self.total else ""
            typer.echo(f"stance predict: {done}{of} rows, {rate:,.0f} rows/s{eta}", err=True)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


# -- MLflow logging of the run ------------------------------------------------------------------------------------------

_sigterm_before: list = []  # the SIGTERM handler _start_mlflow_run replaced


def _raise_on_sigterm(signum, frame):
    from train.tracking import TrainingInterrupted

    raise TrainingInterrupted(f"received signal {signum}")


def _start_mlflow_run(model, input, output, text_column, chunk_size, engine, backend="torch", int8=False):
    import signal

    import mlflow

    from train.tracking import get_experiment_id, git_info, process_tags, reconcile_stale_runs, setup_tracking

    setup_tracking()
    exp_id = get_experiment_id(INFERENCE_EXPERIMENT)
    reconcile_stale_runs(exp_id)
    # SIGTERM (what schedulers send) would end the process with the run left RUNNING: raise instead, so that
    # predict_cmd closes the run KILLED as on Ctrl-C (as tracking.closing_run does for training); _end_mlflow_run undoes it
    _sigterm_before.append(signal.signal(signal.SIGTERM, _raise_on_sigterm))
    run = mlflow.start_run(experiment_id=exp_id, run_name=f"predict-{Path(input).stem}")
    mlflow.log_params({"model": model, "input": str(Path(input).resolve()), "output": str(Path(output).resolve()),
                       "text_column": text_column, "chunk_size": chunk_size, "engine": engine,
                       "backend": backend, "int8": int8})
    mlflow.set_tags({**git_info(), **process_tags()})
    return run


def _end_mlflow_run(run, result, status: str, error: str | None = None) -> None:
    if run is None:
        return
    import signal

    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not leave the run half closed
    try:
        _close_mlflow_run(result, status, error)
    finally:
        signal.signal(signal.SIGTERM, _sigterm_before.pop() if _sigterm_before else signal.SIG_DFL)


def _close_mlflow_run(result, status: str, error: str | None) -> None:
    import mlflow

    if error:
        mlflow.set_tag("stance.error", error[:5000])
    if result is not None:
        summary, uri, version, input = result
        from train.hashing import sha256_file

        digest = getattr(summary, "input_sha256", "") or sha256_file(Path(input))
        mlflow.set_tags({"model_uri": uri, "model_version": version, "input_sha256": digest})
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        # the input as a dataset with its content digest (lineage: which file exactly was scored)
        mlflow.log_input(MetaDataset(HTTPDatasetSource(Path(input).resolve().as_uri()), name=Path(input).name, digest=digest[:16]),
                         context="inference")
        metrics = {"rows": summary.rows, "bad_rows": summary.bad_rows, "rows_per_s": summary.rows_per_s, "seconds": summary.seconds,
                   "chunks_computed": summary.chunks_computed, "chunks_reused": summary.chunks_reused}
        good = max(1, summary.rows - summary.bad_rows)
        for label, n in summary.labels.items():
            metrics[f"count_{label}"] = n
            metrics[f"frac_{label}"] = n / good
        mlflow.log_metrics(metrics)
        mlflow.log_dict({"labels": summary.labels, "bad_row_reasons": summary.errors}, "inference_summary.json")
    mlflow.end_run(status=status)


# -- Spark ----------------------------------------------------------------------------------------------------------------

def predict_with_spark(model, input, output, text_column, master, detect_language, tmp, encoding="utf-8"):
    """The recipe from the module docstring, reading and writing the same formats as the local engine."""
    import os
    import warnings

    import mlflow.pyfunc
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    from train.schema import LABELS
    from train.inference import (LANGUAGE_COLUMNS, OUTPUT_COLUMNS, InferenceError, PredictSummary, count_predictions, file_format, input_columns,
                                 iter_chunks)

    in_fmt, out_fmt = file_format(input, "input"), file_format(output, "output")
    if not Path(input).is_file():
        raise InferenceError(f"{input}: input file not found")
    columns = input_columns(Path(input), in_fmt, encoding)
    if text_column not in columns:
        raise InferenceError(f"{input}: no column {text_column!r}; available columns: {', '.join(columns) or '(none)'}")
    pyfunc_uri, uri, version = _pyfunc_uri(model, Path(tmp))
    start = time.perf_counter()
    warnings.filterwarnings("ignore", category=FutureWarning, module="pyspark")  # pandas 3 notice, once per UDF
    spark = (SparkSession.builder.master(master).appName("stance-predict").config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    readers = {"parquet": lambda: spark.read.parquet(str(input)),
               "csv": lambda: spark.read.csv(str(input), header=True, multiLine=True, escape='"', encoding=encoding),
               "jsonl": lambda: spark.read.json(str(input))}
    df = readers[in_fmt]().withColumn("__row", F.monotonically_increasing_id())
    fields = [T.StructField(c, T.StringType() if c in ("pred_stance", "pred_error") else T.DoubleType()) for c in OUTPUT_COLUMNS]
    predict = mlflow.pyfunc.spark_udf(spark, pyfunc_uri, result_type=T.StructType(fields), env_manager="local")
    originals = [c for c in df.columns if c != "__row" and c not in OUTPUT_COLUMNS]
    scored = df.withColumn("__pred", predict(F.struct(F.col(f"`{text_column}`").alias("text"))))
    cols = [F.col(f"`{c}`") for c in originals] + [F.col(f"__pred.{c}").alias(c) for c in OUTPUT_COLUMNS if c != "pred_stance"]
    # spark_udf casts string results with astype(str), so a bad row's empty stance arrives as "None": keep labels only
    stance = F.col("__pred.pred_stance")
    cols.insert(len(originals), F.when(stance.isin(*LABELS), stance).alias("pred_stance"))
    detect = not any(c in columns for c in LANGUAGE_COLUMNS) if detect_language is None else detect_language
    if detect:
        cols.append(_language_udf()(F.col(f"`{text_column}`").cast("string")).alias("detected_language"))
    cols += [F.lit(uri).alias("model_uri"), F.lit(version).alias("model_version")]
    result = scored.select(*cols, "__row").orderBy("__row").drop("__row").coalesce(1)
    out_dir = Path(tmp) / "spark-out"
    writer = result.write.mode("overwrite")
    {"parquet": lambda: writer.parquet(str(out_dir)), "csv": lambda: writer.csv(str(out_dir), header=True, escape='"'),
     "jsonl": lambda: writer.option("ignoreNullFields", "false").json(str(out_dir))}[out_fmt]()
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

        from train.inference import detect_languages

        return pd.Series(detect_languages(texts.tolist()), dtype=object)

    # the eval type is given explicitly: type hints are strings under `from __future__ import annotations`
    return pandas_udf(detected_language, "string", PythonEvalType.SQL_SCALAR_PANDAS_UDF)


def _pyfunc_uri(model: str, tmp: Path) -> tuple[str, str, str]:
    """An MLflow pyfunc for the UDF: the URI or MLflow directory as given, or a stance model directory wrapped on the fly."""
    local = Path(model)
    if not local.exists():
        from train.tracking import setup_tracking

        setup_tracking()
        return model, model, registered_version(model)
    if (local / "MLmodel").is_file():
        stance_dir_in(local)
        return str(local.resolve()), str(local.resolve()), ""
    import mlflow.pyfunc

    from train.tracking import PYFUNC_FILE, pinned_requirements

    wrapped = tmp / "pyfunc"
    mlflow.pyfunc.save_model(str(wrapped), python_model=str(PYFUNC_FILE), artifacts={"stance_model": str(stance_dir_in(local))},
                             code_paths=[str(PYFUNC_FILE.parent)], pip_requirements=pinned_requirements())
    return str(wrapped), str(local.resolve()), ""
