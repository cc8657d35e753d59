"""`stance predict`: batch inference over a CSV / JSONL / Parquet file (the file contract: train/inference/batch.py).

MODEL is a local directory (a saved stance model with stance_model.json, or an MLflow model directory) or an MLflow
model URI (runs:/<run_id>/model, models:/<name>/<version>, models:/<name>@<alias>). MLflow models are downloaded and
their stance model directory (artifacts/<...> inside the pyfunc) is loaded directly, so the length-sorted, dynamically
padded engine runs without the pyfunc layer in between. `--engine spark` runs the pyfunc as a Spark UDF
(train/tracking/spark.py has the recipe for any PySpark job).

Only typer is imported at module level: `stance --help` must stay instant.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import typer

from train.cli.common import fail
from train.naming import INFERENCE_EXPERIMENT


def predict_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="MLflow model URI (runs:/ID/model, models:/NAME/VERSION, models:/NAME@ALIAS) or a local model directory.",
    ),
    input: Path = typer.Option(..., "--input", "-i", help="CSV, JSONL or Parquet file (by extension)."),
    output: Path = typer.Option(..., "--output", "-o", help="Parquet, CSV or JSONL file (by extension); written atomically."),
    text_column: str = typer.Option("text", "--text-column", help="Column holding the statements."),
    encoding: str = typer.Option(
        "utf-8",
        "--encoding",
        help="Text encoding of a CSV input (e.g. latin-1, cp1252, utf-16); JSONL is always UTF-8. A UTF-8 byte-order mark is accepted.",
    ),
    batch_size: int = typer.Option(0, "--batch-size", help="Rows per forward pass (0: 64 on CPU, 256 on GPU)."),
    chunk_size: int = typer.Option(
        5000, "--chunk-size", help="Rows read, predicted and written at a time (bounds memory; unit of --resume)."
    ),
    detect_language: Optional[bool] = typer.Option(
        None,
        "--detect-language/--no-detect-language",
        help="Add detected_language (default: only when the input has no language column).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run into the same output, reusing its finished chunks."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard an interrupted run's finished chunks and start over."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    precision: str = typer.Option(
        "auto", "--precision", help="auto (bf16 on a GPU that supports it, else fp32), fp32, bf16, fp16."
    ),
    threads: int = typer.Option(0, "--threads", help="CPU threads for the model (0: one per core)."),
    backend: str = typer.Option(
        "torch",
        "--backend",
        help="CPU runtime for transformer models: torch, or onnx (ONNX Runtime with fused kernels: same predictions, faster; exported once per model and cached; needs the [onnx] extra). The baseline ignores it.",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="CPU only, implies --backend onnx: int8 weights in the ONNX graph (faster, approximate: 96% agreement with fp32 on the default model's test split).",
    ),
    log_mlflow: bool = typer.Option(
        False,
        "--log-mlflow",
        help=f"Log the run (input digest, counts, label distribution, rows/s) to the MLflow experiment '{INFERENCE_EXPERIMENT}'.",
    ),
    long_text: str = typer.Option(
        "truncate",
        "--long-text",
        help="Texts longer than the model's max length: truncate (score the first max_length tokens, flagged in the "
        "`truncated` column), window (overlapping windows) or sentences (groups of whole sentences), both averaged by "
        "token count. See docs/long-texts.md.",
    ),
    engine: str = typer.Option("local", "--engine", help="local (this process) or spark (pyspark + mlflow.pyfunc.spark_udf)."),
    spark_master: str = typer.Option("local[*]", "--spark-master", help="With --engine spark: the Spark master URL."),
    gold_column: Optional[str] = typer.Option(
        None,
        "--gold-column",
        help="Column with your own labels: kept in the output, agreement (accuracy, macro-F1 with CI) printed at the end. Default: `stance` when the input has it.",
    ),
):
    """Predict stance for every row of a file; every input row comes out, in order, with its columns plus predictions."""
    from train.inference import InferenceError
    from train.tracking.identity import model_identity, write_sidecar
    from train.tracking.predict_runs import end_predict_run, start_predict_run
    from train.tracking.registry import quiet_libraries

    if engine not in ("local", "spark"):
        fail(f"--engine: {engine!r} is not one of local, spark")
    if device not in ("auto", "cpu", "cuda"):
        fail(f"--device: {device!r} is not one of auto, cpu, cuda")
    if backend not in ("torch", "onnx"):
        fail(f"--backend: {backend!r} is not one of torch, onnx")
    if long_text not in ("truncate", "window", "sentences"):
        fail(f"--long-text: {long_text!r} is not one of truncate, window, sentences")
    if long_text != "truncate" and engine == "spark":
        fail("--long-text window/sentences runs with --engine local (the Spark UDF runs the logged pyfunc as it is)")
    if int8:
        backend = "onnx"  # torch's own dynamic quantization cost 10 macro-F1 points on the default model; ORT's per-channel int8 cost 1.3
    if backend == "onnx" and engine == "spark":
        fail("--backend onnx and --int8 run with --engine local (the Spark UDF runs the logged pyfunc as it is)")
    _check_gold_column(input, gold_column, encoding)
    quiet_libraries()
    run = start_predict_run(model, input, output, text_column, chunk_size, engine, backend, int8) if log_mlflow else None
    try:
        with tempfile.TemporaryDirectory(prefix="stance-predict-") as tmp:
            if engine == "spark":
                from train.tracking.spark import predict_with_spark

                summary, uri, version = predict_with_spark(
                    model, input, output, text_column, spark_master, detect_language, tmp, encoding
                )
                identity = model_identity(uri, version, None)
            else:
                from train.inference import PredictOptions

                opts = PredictOptions(
                    text_column=text_column,
                    batch_size=batch_size,  # 0 until the device is known
                    chunk_rows=chunk_size,
                    detect_language=detect_language,
                    encoding=encoding,
                    long_text=long_text,
                )
                summary, uri, version, identity = _predict_local(
                    model,
                    input,
                    output,
                    opts,
                    device=device,
                    precision=precision,
                    threads=threads,
                    backend=backend,
                    int8=int8,
                    resume=resume,
                    overwrite=overwrite,
                    tmp=tmp,
                )
    except InferenceError as e:
        end_predict_run(run, None, "FAILED", str(e))
        fail(str(e))
    except BaseException as e:
        end_predict_run(run, None, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED", repr(e))
        raise
    meta = write_sidecar(output, identity)  # the model's citable identity, for every output format
    reused = f", {summary.chunks_reused} reused from the interrupted run" if summary.chunks_reused else ""
    typer.echo(
        f"{output}: {summary.rows} rows ({summary.bad_rows} bad) in {summary.seconds:.1f}s, {summary.rows_per_s:.0f} rows/s; "
        f"chunks: {summary.chunks_computed} computed{reused}",
        err=True,
    )
    if getattr(summary, "truncated", 0):
        typer.echo(
            f"truncated: {summary.truncated} rows longer than the model's max length were scored on their first "
            f"max_length tokens (column `truncated`; --long-text window scores them whole)",
            err=True,
        )
    typer.echo(f"model: {identity['model_id']} (details: {meta})", err=True)
    if summary.errors:
        typer.echo(
            "bad rows: " + ", ".join(f"{k}: {v}" for k, v in sorted(summary.errors.items(), key=lambda kv: -kv[1])), err=True
        )
    end_predict_run(run, (summary, uri, version, input), "FINISHED")
    _report_agreement(output, gold_column)


# -- gold labels in the input: agreement -----------------------------------------------------------------------------


def _check_gold_column(input: Path, gold_column: str | None, encoding: str) -> None:
    """A --gold-column the input lacks is refused before any work (the default `stance` is used only when present)."""
    if gold_column is None:
        return
    from train.inference import InferenceError, file_format
    from train.inference.readers import input_columns

    try:
        columns = input_columns(Path(input), file_format(Path(input), "input"), encoding)
    except (InferenceError, OSError):
        return  # the run itself reports an unreadable input
    if gold_column not in columns:
        from train.data import did_you_mean

        names = list(map(str, columns))
        fail(
            f"--gold-column {gold_column!r}: {input} has no such column (it has {', '.join(names)}){did_you_mean(gold_column, names)}"
        )


def _report_agreement(output: Path, gold_column: str | None) -> None:
    from train.reports.file_eval import agreement

    found = agreement(output, gold_column or "stance")
    if found is None:
        return
    metrics, n, unlabeled = found
    name = gold_column or "stance"
    skipped = f"; {unlabeled} rows without a gold label or a prediction left out" if unlabeled else ""
    if not n:
        typer.echo(f"agreement with {name!r}: no row has both a gold label and a prediction{skipped}", err=True)
        return
    typer.echo(
        f"agreement with {name!r} ({n} rows): accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f} "
        f"(95% CI {metrics['macro_f1_ci_low']:.3f}-{metrics['macro_f1_ci_high']:.3f}){skipped}; "
        f"the full report: stance eval file",
        err=True,
    )


def _predict_local(model, input, output, opts, *, device, precision, threads, backend, int8, resume, overwrite, tmp):
    """Load the model (device, precision, threads, backend, int8: load_for_predict) and predict `input` into `output`
    with `opts` (train.inference.PredictOptions; batch_size 0: 256 on a GPU, 64 on CPU); `model_uri` and
    `model_version` are the loaded model's."""
    from dataclasses import replace

    from train.inference import WorkLock, predict_file_with
    from train.models.card import model_fingerprint
    from train.tracking.identity import model_identity
    from train.tracking.registry import load_for_predict

    WorkLock.check_free(Path(output))  # another run on this output: say so before downloading and loading a model
    stance, uri, version, dev, model_dir = load_for_predict(model, Path(tmp), device, precision, threads, backend, int8)
    opts = replace(opts, model_uri=uri, model_version=version, batch_size=opts.batch_size or (256 if dev == "cuda" else 64))
    # everything else that changes the predictions: parts of a run with other values are never resumed into this one
    options = {
        "model_version": version,
        "model_files": model_fingerprint(model_dir),
        "device": dev,
        "precision": precision,
        "backend": backend if stance.kind == "transformer" else "",
        "int8": int8 and stance.kind == "transformer",
    }
    with progress_reporter(input) as progress:
        summary = predict_file_with(
            stance, input, output, opts, resume=resume, overwrite=overwrite, progress=progress, options=options
        )
    return summary, uri, version, model_identity(uri, version, model_dir, options["model_files"])


# -- progress -----------------------------------------------------------------------------------------------------------


class progress_reporter:
    """A rich progress bar (rows, rows/s, ETA) on a terminal, updated as each slice of batches is scored; otherwise
    (a log file, a pipe) one plain line after `first` seconds, then every `every` seconds, and never more often."""

    def __init__(self, input_path: Path, every: float = 30.0, first: float = 3.0):
        self.input_path, self.every, self.first, self.bar = Path(input_path), every, first, None
        self.next_line = first

    def __enter__(self):
        from train.inference import count_rows, file_format

        try:
            self.total = count_rows(self.input_path, file_format(self.input_path, "input"))
        except Exception:  # noqa: BLE001 - the run itself reports unreadable inputs clearly
            self.total = None
        self.start = time.perf_counter()
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self.bar = Progress(
                TextColumn("predict"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} rows/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                transient=False,
            )
            self.bar.start()
            self.task = self.bar.add_task("predict", total=self.total, rate="-")
        return self

    def __call__(self, done: int, summary) -> None:
        elapsed = time.perf_counter() - self.start
        rate = done / max(1e-9, elapsed)
        if self.bar is not None:
            self.bar.update(self.task, completed=done, rate=f"{rate:,.0f}")
        elif elapsed >= self.next_line and done:
            self.next_line = elapsed + self.every
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
