"""`stance select`, `stance agreement`, `stance data label-issues`: the coding round around the model
(train/coding/ has the methods; docs/coding.md the workflow). Bad input files exit 2 with file:line: field."""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from pathlib import Path
from typing import List, Optional

import typer

from train.cli.common import fail


def _fail_data(error) -> None:
    for problem in error.problems[:50]:
        typer.echo(f"error: {problem}", err=True)
    fail(f"{len(error.problems)} problem(s) in the input", 2)


def select_cmd(
    pool: Path = typer.Option(
        ...,
        "--pool",
        help="Statements to choose from (CSV, JSONL, Parquet; needs id and text). "
        "A `stance predict` output (prob_* columns) needs no model for the uncertainty.",
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Selection file (CSV or JSONL): id, reason, rank, uncertainty, cluster, ..."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Model URI or directory: probabilities and embeddings (for "
        "clusters). Without it: the pool's prob_* columns, diversity by language and speaker only.",
    ),
    n: int = typer.Option(100, "--n", min=1, help="How many statements to pick."),
    strategy: str = typer.Option(
        "uncertainty",
        "--strategy",
        help="uncertainty (+ diversity), or random: a simple random "
        "sample, the unbiased evaluation sample `stance analyze --validation` needs.",
    ),
    measure: str = typer.Option("margin", "--measure", help="Uncertainty: margin (1 - (p1 - p2)) or entropy."),
    exclude: Optional[List[Path]] = typer.Option(
        None,
        "--exclude",
        help="Annotations, corpus files or earlier selections: "
        "their ids and texts are never picked (repeatable; directories: *.jsonl, *.csv).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random sample and k-means seed."),
    text_column: str = typer.Option("text", "--text-column"),
):
    """Pick the next statements to label: the most uncertain, spread across embedding clusters, languages and
    speakers; or a seeded random sample. Never a statement already labeled (by id or by normalised text)."""
    import numpy as np

    from train.coding.records import read_table
    from train.coding.selection import MEASURES, PROB_COLUMNS, STRATEGIES, eligible_rows, score_pool, select
    from train.data import DataError, Problem, corpus_files, normalise_text
    from train.formats import write_rows_atomic as write_table

    if strategy not in STRATEGIES:
        fail(f"--strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if measure not in MEASURES:
        fail(f"--measure: {measure!r} is not one of {', '.join(MEASURES)}")
    try:
        columns, records = read_table(pool)
        for need in ("id", text_column):
            if need not in columns:
                raise DataError(Problem(str(pool), 1, need, "missing column"))
        rows, seen, problems = [], {}, []
        for line, row in records:
            rid = str(row.get("id") or "").strip()
            if not rid:
                problems.append(Problem(str(pool), line, "id", "empty"))
            elif rid in seen:
                problems.append(Problem(str(pool), line, "id", f"{rid!r} appears twice (first on line {seen[rid]})"))
            seen[rid] = line
            rows.append({**row, "id": rid, "text": str(row.get(text_column) or "")})
        ids, texts = set(), set()
        files, missing = corpus_files(exclude or [])
        problems += missing
        for path in files:
            cols, ex = read_table(path)
            if "id" not in cols and "text" not in cols:
                problems.append(Problem(str(path), 1, "id", "an exclusion file needs an id or a text column"))
            ids.update(str(r["id"]).strip() for _, r in ex if r.get("id") not in (None, ""))
            texts.update(normalise_text(str(r["text"])) for _, r in ex if r.get("text"))
        if problems:
            raise DataError(problems)
    except DataError as e:
        _fail_data(e)
    proba = None
    if all(c in columns for c in PROB_COLUMNS):
        proba = np.array([[np.nan if r.get(c) in (None, "") else float(r[c]) for c in PROB_COLUMNS] for r in rows])
    embeddings = None
    if model:
        from train.inference import InferenceError
        from train.tracking.registry import load_for_predict, quiet_libraries

        quiet_libraries()
        keep, _ = eligible_rows(rows, ids, texts)
        with tempfile.TemporaryDirectory(prefix="stance-select-") as tmp:
            try:
                stance = load_for_predict(model, Path(tmp))[0]
            except InferenceError as e:
                fail(str(e))
            p, emb = score_pool(stance, [rows[i]["text"] for i in keep])
        if proba is None:
            proba = np.full((len(rows), p.shape[1]), np.nan)
            proba[keep] = p
        if emb is not None:
            embeddings = np.zeros((len(rows), emb.shape[1]))
            embeddings[keep] = emb
    if strategy == "uncertainty" and proba is None:
        fail("--strategy uncertainty needs --model or a pool with prob_* columns (a `stance predict` output)")
    picks = select(rows, n, strategy, proba, embeddings, seed, measure, exclude_ids=ids, exclude_texts=texts)
    _, dropped = eligible_rows(rows, ids, texts)
    out = [{**rows[p["index"]], **{k: v for k, v in p.items() if k != "index"}, "strategy": strategy} for p in picks]
    head = ["id", "reason", "rank", "uncertainty", "cluster", "strategy"]
    write_table(output, out, head + [c for c in columns if c not in head])
    langs = Counter(str(r.get("language") or r.get("detected_language") or "?") for r in out)
    left = ", ".join(f"{v} {k}" for k, v in dropped.items() if v)
    typer.echo(
        f"wrote {len(out)} of {len(rows)} pool rows to {output} ({strategy}); left out: {left or 'none'}; "
        f"languages: {', '.join(f'{k} {v}' for k, v in langs.most_common())}"
    )
    if len(out) < n:
        typer.echo(f"note: only {len(out)} eligible rows (asked for {n})", err=True)


def agreement_cmd(
    files: List[Path] = typer.Argument(
        ..., help="Annotations in long form (CSV/JSONL): id, annotator, stance (optional text, language, borderline, note, time)."
    ),
    model_predictions: Optional[Path] = typer.Option(
        None,
        "--model-predictions",
        help="The model's labels for the same ids: a `stance predict` output (pred_stance) or id + stance.",
    ),
    adjudicated: Optional[Path] = typer.Option(
        None,
        "--adjudicated",
        help="Adjudicated labels (id, stance): the reference for the model (default: the strict majority of the annotators).",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Folder for agreement.md, agreement.json, disagreements.csv."
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples of statements (0: no intervals)."),
    seed: int = typer.Option(0, "--seed"),
):
    """Krippendorff's alpha (nominal, ordinal) and Cohen's kappa per pair, per language and per label, with bootstrap
    intervals; the disagreements for adjudication; and the model's agreement with the humans on the same scale."""
    from train.coding.agreement import agreement_report, disagreements, read_annotations, read_labels, report_markdown
    from train.data import DataError
    from train.formats import write_rows_atomic as write_table
    from train.formats import write_text_atomic

    try:
        ann = read_annotations(files)
        adj = read_labels(adjudicated, ("stance",), ann) if adjudicated else None
        mod = read_labels(model_predictions, ("pred_stance", "stance"), ann) if model_predictions else None
        rep = agreement_report(ann, adj, mod, n_boot=bootstrap, seed=seed)
    except DataError as e:
        _fail_data(e)
    except ValueError as e:
        fail(str(e))
    text = report_markdown(rep)
    typer.echo(text)
    if output:
        dis = disagreements(ann)
        head = ["id", "reason", "spread", "n_annotators", "majority", "language", "text"]
        write_table(output / "disagreements.csv", dis, head + [f"label_{a}" for a in ann.annotators])
        write_text_atomic(output / "agreement.md", text)
        write_text_atomic(output / "agreement.json", json.dumps(rep, indent=1, default=float))
        typer.echo(
            f"wrote {output}/agreement.md, agreement.json and disagreements.csv ({len(dis)} statements to adjudicate)", err=True
        )


def label_issues_cmd(
    output: Path = typer.Option(
        ..., "--output", "-o", help="Report (CSV or JSONL): id, reason, given/suggested label, file, line, ..."
    ),
    config: Path = typer.Option(
        Path("configs/baseline.yaml"),
        "--config",
        "-c",
        help="Run config: the corpus (data.paths) and the "
        "estimator for the out-of-fold probabilities (the TF-IDF baseline: seconds per fold).",
    ),
    folds: int = typer.Option(5, "--folds", min=2),
    seed: int = typer.Option(0, "--seed"),
):
    """Rows whose label the data itself contradicts (cleanlab's confident learning on out-of-fold probabilities),
    ranked, for review in `stance label`; nothing is relabeled."""
    from train.cli.common import fail_on_data_error
    from train.coding.label_issues import COLUMNS, label_issues
    from train.config import ConfigError, load_config
    from train.data import DataError
    from train.formats import write_rows_atomic as write_table

    try:
        cfg = load_config(config)
    except (ConfigError, OSError) as e:
        fail(str(e))
    try:
        issues, checked = label_issues(cfg, folds, seed)
    except DataError as e:
        fail_on_data_error(e)
    write_table(output, issues, COLUMNS)
    flips = Counter(f"{r['given_label']} -> {r['suggested_label']}" for r in issues)
    typer.echo(
        f"{len(issues)} of {checked} rows flagged ({100 * len(issues) / max(1, checked):.1f}%), written to {output}: "
        + ", ".join(f"{k} {v}" for k, v in flips.most_common())
    )
