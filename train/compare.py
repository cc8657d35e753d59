"""Comparing runs: a leaderboard over configurations (seeds pooled) and a Markdown report of one run.

Both read MLflow through `mlflow.search_runs` / `MlflowClient`, so they work on the local store and on a team server.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

import pandas as pd

from train.schema import LABELS

DEFAULT_EXPERIMENT = "stance-ru-az-2025"
SEED_SUFFIX = re.compile(r"-s\d+$")
# Params that differ between runs of one configuration without making it another configuration.
NOT_CONFIG_PARAMS = {"train.seed", "run_name", "threads", "train.threads", "output_dir", "register_as", "experiment"}
LOWER_IS_BETTER = {"ece", "train_seconds"}


class CompareError(ValueError):
    pass


def _lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER or metric.endswith("loss")


def load_runs(experiments: list[str] | None = None, include_parents: bool = False) -> pd.DataFrame:
    """FINISHED runs of the experiments (by name), one row each, as `mlflow.search_runs` returns them.

    Parent runs of seed sweeps (tag stance.parent=true) only repeat their children's numbers, so they are left out
    unless asked for.
    """
    import mlflow

    from train.tracking import setup_tracking

    setup_tracking()
    names = experiments or [DEFAULT_EXPERIMENT]
    missing = [n for n in names if mlflow.get_experiment_by_name(n) is None]
    if missing:
        known = ", ".join(e.name for e in mlflow.search_experiments()) or "none"
        raise CompareError(f"no experiment named {', '.join(map(repr, missing))} in {mlflow.get_tracking_uri()} (experiments: {known})")
    runs = mlflow.search_runs(experiment_names=names, filter_string="attributes.status = 'FINISHED'", output_format="pandas")
    if runs.empty:
        return runs
    if not include_parents and "tags.stance.parent" in runs:
        runs = runs[runs["tags.stance.parent"].fillna("false").str.lower() != "true"]
    return runs.reset_index(drop=True)


def config_names(runs: pd.DataFrame) -> pd.Series:
    """The configuration each run belongs to: its run name without the -s<seed> suffix, made unique by its params.

    Two configurations that happen to share a name (a hand-set run_name) stay apart: their params, minus the seed
    and bookkeeping, differ, and the shorter one gets a short digest appended.
    """
    param_cols = sorted(c for c in runs.columns if c.startswith("params.") and c.removeprefix("params.") not in NOT_CONFIG_PARAMS)
    names = runs.get("tags.mlflow.runName", pd.Series([""] * len(runs), index=runs.index)).fillna("")
    base = names.map(lambda n: SEED_SUFFIX.sub("", n) or "(unnamed)")

    def digest(row) -> str:
        values = {c: row[c] for c in param_cols if isinstance(row[c], str)}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:6]

    digests = runs.apply(digest, axis=1) if len(runs) else pd.Series([], dtype=str)
    out = base.copy()
    for name, idx in base.groupby(base).groups.items():
        if digests[idx].nunique() > 1:
            out[idx] = [f"{name}#{digests[i]}" for i in idx]
    return out


def seed_keys(runs: pd.DataFrame) -> pd.Series:
    """The seed each run trained with: its train.seed param, else its `seed` tag, else the run name's -s<seed> suffix.
    A run with none of them (hand-made, a sweep's parent) is its own key, so it is never merged with another."""
    def col(name):
        return runs[name] if name in runs else pd.Series([None] * len(runs), index=runs.index, dtype=object)

    suffix = col("tags.mlflow.runName").map(lambda n: m.group(1) if isinstance(n, str) and (m := re.search(r"-s(\d+)$", n)) else None)
    return col("params.train.seed").fillna(col("tags.seed")).fillna(suffix).fillna("run:" + runs["run_id"])


def leaderboard(runs: pd.DataFrame, metric: str = "macro_f1") -> pd.DataFrame:
    """One row per configuration: seeds, metric mean/std over seeds, per-language macro-F1 means, train time, run ids.

    Statistics are over distinct seeds: a seed trained again (a rerun, the same config re-trained) is one sample, not
    several identical ones that would shrink the std to 0. Its latest finished run stands for it; `n_runs` counts all
    runs, `run_ids` lists the ones used.
    """
    col = f"metrics.{metric}"
    if runs.empty:
        return pd.DataFrame()
    if col not in runs:
        known = sorted(c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.") and not c.startswith("metrics.val_"))
        raise CompareError(f"no run has a metric {metric!r}; metrics: {', '.join(known)}")
    runs = runs.assign(_config=config_names(runs), _seed=seed_keys(runs))
    lang_cols = sorted(c for c in runs.columns if c.startswith("metrics.macro_f1_lang_"))
    extra_cols = sorted(c for c in runs.columns if re.fullmatch(r"metrics\.[^/]+/(macro_f1|ece)", c))
    rows = []
    for name, every in runs.groupby("_config", sort=False):
        g = every.sort_values("start_time", kind="stable").groupby("_seed", sort=False).tail(1) if "start_time" in every else every.drop_duplicates("_seed", keep="last")
        values = g[col].dropna()
        row = {
            "config": name,
            "model_family": _first(g, "tags.model_family"),
            "n_seeds": len(g),
            "n_runs": len(every),
            f"{metric}_mean": values.mean() if len(values) else math.nan,
            f"{metric}_std": values.std(ddof=1) if len(values) > 1 else math.nan,  # sample std over seeds
        }
        for c in extra_cols:  # extra evaluation sets (real statements): shown beside the eval split
            row[c.removeprefix("metrics.")] = g[c].mean()
        for c in lang_cols:
            row[c.removeprefix("metrics.")] = g[c].mean()
        row["train_seconds"] = g["metrics.train_seconds"].mean() if "metrics.train_seconds" in g else math.nan
        row["run_ids"] = ",".join(g["run_id"])
        rows.append(row)
    board = pd.DataFrame(rows)
    return board.sort_values(f"{metric}_mean", ascending=_lower_is_better(metric), na_position="last", kind="stable").reset_index(drop=True)


def _first(g: pd.DataFrame, col: str) -> str:
    if col not in g:
        return ""
    vals = g[col].dropna()
    return str(vals.iloc[0]) if len(vals) else ""


def _fmt(x, digits: int = 3) -> str:
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.{digits}f}"
    return str(x)


def display_frame(board: pd.DataFrame, metric: str = "macro_f1", short_ids: bool = True) -> pd.DataFrame:
    """The leaderboard as strings for people: mean ± std in one column, seconds rounded, run ids shortened."""
    if board.empty:
        return board
    seeds = [str(s) if s == r else f"{s} ({r} runs)" for s, r in zip(board["n_seeds"], board.get("n_runs", board["n_seeds"]))]
    out = pd.DataFrame({"config": board["config"], "model": board["model_family"], "seeds": seeds})
    out[metric] = [(_fmt(m) + (f" ± {_fmt(s)}" if not math.isnan(s) else "")) for m, s in zip(board[f"{metric}_mean"], board[f"{metric}_std"])]
    for c in board.columns:
        if "/" in c:  # an extra evaluation set's metric, e.g. realquotes_dev/macro_f1
            out[c] = board[c].map(_fmt)
    for c in board.columns:
        if c.startswith("macro_f1_lang_"):
            out[c.removeprefix("macro_f1_lang_")] = board[c].map(_fmt)
    out["train_s"] = board["train_seconds"].map(lambda s: _fmt(s, 0))
    out["runs"] = board["run_ids"].map(lambda ids: ",".join(i[:8] for i in ids.split(",")) if short_ids else ids)
    return out


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs the optional tabulate package)."""
    def cell(v) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(cell, df.columns)) + " |"
    sep = "|" + "|".join("---" for _ in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def format_leaderboard(board: pd.DataFrame, metric: str = "macro_f1", fmt: str = "table") -> str:
    if fmt == "csv":
        return board.to_csv(index=False, float_format="%.6g")
    shown = display_frame(board, metric, short_ids=fmt == "table")
    if board.empty:
        return "no finished runs\n"
    repeated = "n_runs" in board and (board["n_runs"] > board["n_seeds"]).any()
    note = "\n(N runs): a seed was trained more than once; only its latest run counts, once.\n" if repeated else ""
    if fmt == "markdown":
        return markdown_table(shown) + note
    if fmt == "table":
        return shown.to_string(index=False) + "\n" + note
    raise CompareError(f"unknown format {fmt!r}: use table, markdown or csv")


# -- one run ---------------------------------------------------------------------------------------------------------

SUMMARY_PARAMS = ("model.kind", "model.name", "model.pooling", "train.lr", "train.epochs", "train.batch_size", "train.max_length",
                  "train.freeze_embeddings", "train.seed", "data.paths", "data.eval_split", "data.holdout_languages",
                  "data.holdout_speaker_groups", "n_train", "n_val", "n_eval")
SUMMARY_TAGS = ("model_family", "languages", "eval_languages", "holdout", "device", "git.commit", "git.dirty")


def misclassified(run_id: str, path: str = "eval/misclassified.json") -> pd.DataFrame:
    """The run's wrong predictions, most confident first (logged by tracking.log_evaluation as an MLflow table)."""
    import mlflow

    table = mlflow.artifacts.load_dict(f"runs:/{run_id}/{path}")
    return pd.DataFrame(table["data"], columns=table["columns"]).sort_values("confidence", ascending=False, kind="stable")


def run_report(run_id: str, top_errors: int = 10) -> str:
    """A Markdown report of one run: params, metrics with CI and ECE, per-language and per-class tables, errors."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from train.tracking import describe_store, setup_tracking

    setup_tracking()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException as e:
        raise CompareError(f"no run {run_id!r} in the store {describe_store()}: {e.message}") from None
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    exp = client.get_experiment(run.info.experiment_id)
    name = t.get("mlflow.runName", run_id)
    lines = [f"# Run report: {name}", "",
             f"- run id: `{run_id}`", f"- experiment: {exp.name} (id {exp.experiment_id})", f"- status: {run.info.status}",
             f"- started: {pd.Timestamp(run.info.start_time, unit='ms', tz='UTC'):%Y-%m-%d %H:%M UTC}",
             f"- artifacts: {run.info.artifact_uri}", ""]
    lines += ["## Setup", "", markdown_table(pd.DataFrame(
        [(k, t[k]) for k in SUMMARY_TAGS if k in t] + [(k, p[k]) for k in SUMMARY_PARAMS if k in p], columns=["setting", "value"]))]

    lines += ["## Metrics", ""]
    if "macro_f1" in m:
        ci = f" (95% bootstrap CI {m['macro_f1_ci_low']:.3f}–{m['macro_f1_ci_high']:.3f})" if "macro_f1_ci_low" in m and "macro_f1_ci_high" in m else ""
        lines += [f"**macro-F1 {m['macro_f1']:.3f}**{ci}", ""]
    main = [(k, m[k]) for k in ("macro_f1", "accuracy", "weighted_f1", "ece", "macro_f1_ci_low", "macro_f1_ci_high", "train_seconds") if k in m]
    lines += [markdown_table(pd.DataFrame(main, columns=["metric", "value"])), "ECE: expected calibration error of the top-class confidence (lower is better).", ""]

    extra = sorted(k.split("/")[0] for k in m if k.endswith("/macro_f1"))
    if extra:
        lines += ["## Extra evaluation sets", "", "Scored by the final model beside the eval split (`data.eval_files`).", ""]
        table = []
        for name in extra:
            g = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith(name + "/")}
            ci = f"{g['macro_f1_ci_low']:.3f}–{g['macro_f1_ci_high']:.3f}" if "macro_f1_ci_low" in g else ""
            table.append((name, g["macro_f1"], ci, g.get("accuracy", math.nan), g.get("ece", math.nan),
                          *(g.get(f"recall_{l}", math.nan) for l in LABELS)))
        lines.append(markdown_table(pd.DataFrame(table, columns=["set", "macro_f1", "95% CI", "accuracy", "ece", *(f"recall_{l}" for l in LABELS)])))
        for name in extra:
            langs_x = sorted(k.removeprefix(f"{name}/macro_f1_lang_") for k in m if k.startswith(f"{name}/macro_f1_lang_"))
            if langs_x:
                lines += [f"{name} per language (macro-F1):", "", markdown_table(pd.DataFrame(
                    {"language": langs_x, "macro_f1": [m[f"{name}/macro_f1_lang_{l}"] for l in langs_x]}))]

    langs = sorted(k.removeprefix("macro_f1_lang_") for k in m if k.startswith("macro_f1_lang_"))
    if langs:
        lines += ["## Per language", "", markdown_table(pd.DataFrame({"language": langs, "macro_f1": [m[f"macro_f1_lang_{l}"] for l in langs]}))]
    classes = [l for l in LABELS if f"f1_{l}" in m]
    if classes:
        lines += ["## Per class", "", markdown_table(pd.DataFrame(
            [(l, m.get(f"precision_{l}", math.nan), m.get(f"recall_{l}", math.nan), m[f"f1_{l}"]) for l in classes],
            columns=["class", "precision", "recall", "f1"]))]

    arts = _artifact_paths(client, run_id)
    if arts:
        lines += ["## Artifacts", ""]
        base = run.info.artifact_uri.rstrip("/")
        for path in arts:
            link = f"{base}/{path}"
            lines.append(f"![{path}]({link})" if path.endswith(".png") else f"- [{path}]({link})")
        lines.append("")

    if "eval/misclassified.json" in arts:
        wrong = misclassified(run_id)
        lines += [f"## Most confident mistakes ({min(top_errors, len(wrong))} of {len(wrong)})", ""]
        cols = [c for c in ("id", "language", "gold", "predicted", "confidence", "text") if c in wrong]
        lines.append(markdown_table(wrong[cols].head(top_errors)) if len(wrong) else "No misclassified examples.\n")
    return "\n".join(lines).rstrip() + "\n"


def _artifact_paths(client, run_id: str, root: str = "") -> list[str]:
    """Evaluation and config artifacts (the model folder is listed once, not file by file)."""
    out = []
    for a in client.list_artifacts(run_id, root or None):
        if a.is_dir and a.path not in ("model",) and not a.path.startswith("model/"):
            out += _artifact_paths(client, run_id, a.path)
        else:
            out.append(a.path)
    return sorted(out)
