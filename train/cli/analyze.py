"""`stance analyze` (stance shares by group and period, corrected for classifier error, with 95% intervals) and
`stance explain` (which words pushed a label). The work is in train.findings; MLflow calls in
train.tracking.analysis_runs. Only typer is imported at module level."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Optional

import typer

from train.cli.common import fail


def _correction(validation, model, predictions_model_uri, method, n_boot, seed, tmp, text_column="text"):
    """The fitted Correction: --validation (scored, or scored here with --model), else the model run's eval split."""
    from train.findings.analyze import read_labeled, validation_arrays
    from train.findings.collect import PROB_COLUMNS
    from train.findings.quantify import Correction

    if validation is not None:
        df = read_labeled(validation)
        if not all(c in df.columns for c in PROB_COLUMNS):
            if not model:
                fail(
                    f"{validation}: no prob_* columns; pass --model so that analyze scores it with the model that scored the predictions"
                )
            from train.tracking.registry import load_for_predict, quiet_libraries

            if text_column not in df.columns:
                fail(
                    f"{validation}: no column {text_column!r} to score (--text-column); the file has: {', '.join(map(str, df.columns))}"
                )
            quiet_libraries()
            stance, *_ = load_for_predict(model, Path(tmp))
            proba = stance.predict_proba(df[text_column].fillna("").astype(str).tolist())
            for i, c in enumerate(PROB_COLUMNS):
                df[c] = proba[:, i]
        proba, y = validation_arrays(df, validation)
        where = f"{len(y)} labeled rows of {validation.name} (--validation)"
    else:
        from train.tracking.analysis_runs import evaluation_rows

        uri = model or predictions_model_uri
        if not uri:
            fail(
                "no --validation file and no model URI (neither --model nor a model_uri column): nothing to fit the correction on"
            )
        try:
            path, run_id = evaluation_rows(uri, Path(tmp))
        except LookupError as e:
            fail(f"{e}; pass --validation FILE (labeled rows of your collection scored by the same model)")
        proba, y = validation_arrays(read_labeled(path), path)
        where = f"{len(y)} rows of the evaluation split of run {run_id[:8]} (AUTHORED text, not your collection)"
        typer.secho(
            f"note: the correction is fitted on {where}; it corrects the model's errors as measured on authored "
            "statements. A labeled random sample of your own collection (--validation) is the sound choice.",
            fg=typer.colors.YELLOW,
            err=True,
        )
    try:
        return Correction(method, where, proba, y, n_boot=n_boot, seed=seed)
    except ValueError as e:
        fail(str(e))


def analyze_cmd(
    predictions: Path = typer.Argument(..., help="Output of `stance predict` (CSV, JSONL or Parquet)."),
    by: str = typer.Option(..., "--by", help="Group column(s), comma-separated (e.g. speaker_group or speaker_group,language)."),
    output: Path = typer.Option(..., "--output", "-o", help="Table file (.csv or .parquet); .md, .tex and plots go beside it."),
    time: Optional[str] = typer.Option(None, "--time", help="Date/time column: shares per period."),
    freq: str = typer.Option("W", "--freq", help="Period with --time: D (day), W (week), M (month)."),
    validation: Optional[Path] = typer.Option(
        None, "--validation", help="Labeled rows (a `stance` column) scored by the same model; the correction is fitted on them."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="The model that scored the predictions (default: the file's model_uri column)."
    ),
    method: str = typer.Option("pacc", "--method", help="Correction: cc (naive), pcc, acc, pacc, emq."),
    n_boot: int = typer.Option(200, "--n-boot", help="Bootstrap replicates for the 95% intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
    chunk_rows: int = typer.Option(50_000, "--chunk-rows", help="Rows read at a time (bounds memory)."),
    text_column: str = typer.Option(
        "text", "--text-column", help="The statements' column of a --validation file that analyze scores itself (with --model)."
    ),
    log: bool = typer.Option(False, "--log", help="Log an analysis run to MLflow (experiment 'stance-analysis')."),
):
    """Stance shares per group (and period), corrected for the classifier's errors, with 95% bootstrap intervals."""
    from train.findings import METHODS, FindingsError
    from train.findings.analyze import build_table
    from train.findings.collect import collect
    from train.findings.outputs import write_outputs

    if method not in METHODS:
        fail(f"--method: {method!r} is not one of {', '.join(METHODS)}")
    if output.suffix.lower() not in (".csv", ".parquet"):
        fail(f"--output: {output} must end in .csv or .parquet")
    group_cols = [c.strip() for c in by.split(",") if c.strip()]
    try:
        data = collect(predictions, group_cols, time, freq, chunk_rows)
        with tempfile.TemporaryDirectory(prefix="stance-analyze-") as tmp:
            corr = _correction(validation, model, data.model_uri, method, n_boot, seed, tmp, text_column)
        table = build_table(data, corr, seed=seed)
    except FindingsError as e:
        fail(str(e))
    files = write_outputs(table, output, group_cols)
    small = int(table.drop_duplicates(data.keys)["small_group"].sum()) if len(table) else 0
    typer.echo(
        f"{predictions}: {data.rows} rows in {len(data.all_keys())} group(s), {small} small (<30 scored rows, flagged); "
        f"{method} fitted on {corr.fitted_on}",
        err=True,
    )
    for f in files:
        typer.echo(f"wrote {f}", err=True)
    if log:
        from train.tracking.analysis_runs import log_analysis_run

        params = {
            "by": by,
            "time": time or "",
            "freq": freq if time else "",
            "method": method,
            "n_boot": n_boot,
            "seed": seed,
            "fitted_on": corr.fitted_on[:500],
            "predictions": str(predictions.resolve()),
        }
        run_id = log_analysis_run(
            params,
            model or data.model_uri,
            predictions,
            files,
            {"rows": data.rows, "groups": len(data.all_keys()), "small_groups": small},
        )
        typer.echo(f"logged analysis run {run_id}", err=True)


def explain_cmd(
    model: str = typer.Option(..., "--model", "-m", help="MLflow model URI or local model directory."),
    text: list[str] = typer.Option([], "--text", "-t", help="A statement to explain (repeatable)."),
    input: Optional[Path] = typer.Option(
        None, "--input", "-i", help="A CSV/JSONL/Parquet file: explain every row of --text-column."
    ),
    text_column: str = typer.Option("text", "--text-column", help="With --input: the column holding the statements."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="With --input: write a JSONL of explanations here."),
    top: int = typer.Option(5, "--top", help="Words shown per class."),
    n_steps: int = typer.Option(50, "--steps", help="Integrated-gradients steps (transformers)."),
):
    """Which words pushed each prediction toward each class (integrated gradients; exact for the TF-IDF baseline)."""
    import json

    from train.findings.explain import explain, format_explanation
    from train.inference import InferenceError
    from train.tracking.registry import load_for_predict, quiet_libraries

    if not text and input is None:
        fail("give --text or --input")
    texts = list(text)
    if input is not None:
        import pandas as pd

        suffix = input.suffix.lower()
        if not input.is_file():
            fail(f"{input}: no such file")
        df = (
            pd.read_parquet(input)
            if suffix in (".parquet", ".pq")
            else pd.read_csv(input, dtype=str)
            if suffix == ".csv"
            else pd.read_json(input, lines=True, dtype=False, convert_dates=False)
        )
        if text_column not in df.columns:
            fail(f"{input}: no column {text_column!r} (--text-column); the file has: {', '.join(map(str, df.columns))}")
        texts += df[text_column].fillna("").astype(str).tolist()
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="stance-explain-") as tmp:
        try:
            stance, *_ = load_for_predict(model, Path(tmp), device="cpu")
        except InferenceError as e:
            fail(str(e))
        results = [explain(stance, t, n_steps=n_steps) for t in texts]
    if output is not None:
        from train.formats import write_text_atomic

        lines = [
            json.dumps(
                {
                    "text": e.text,
                    "proba": dict(zip(e.labels, map(float, e.proba))),
                    "toward": {l: e.top(l, top) for l in e.labels},
                    "completeness_gap": e.delta,
                },
                ensure_ascii=False,
            )
            for e in results
        ]
        write_text_atomic(output, "\n".join(lines) + "\n")
        typer.echo(f"wrote {output}", err=True)
    else:
        for e in results:
            typer.echo(format_explanation(e, top))
