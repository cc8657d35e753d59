"""The leaderboard: one row per configuration over finished runs, seeds pooled (mean ± std), as a table, Markdown or CSV.

Runs come from train.tracking.queries (the local store or a team server)."""

from __future__ import annotations

import hashlib
import json
import math
import re

import pandas as pd

from train.formats import markdown_table as _markdown_table
from train.naming import NOT_CONFIG_PARAMS, seed_of, without_seed
from train.tracking.queries import finished_runs_frame

DEFAULT_EXPERIMENT = "stance-ru-az-2025"
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
    try:
        return finished_runs_frame(experiments or [DEFAULT_EXPERIMENT], include_parents)
    except LookupError as e:
        raise CompareError(str(e)) from None


def config_names(runs: pd.DataFrame) -> pd.Series:
    """The configuration each run belongs to: its run name without the -s<seed> suffix, made unique by its params.

    Two configurations that happen to share a name (a hand-set run_name) stay apart: their params, minus the seed
    and bookkeeping, differ, and the shorter one gets a short digest appended.
    """
    param_cols = sorted(c for c in runs.columns if c.startswith("params.") and c.removeprefix("params.") not in NOT_CONFIG_PARAMS)
    names = runs.get("tags.mlflow.runName", pd.Series([""] * len(runs), index=runs.index)).fillna("")
    base = names.map(lambda n: without_seed(n) or "(unnamed)")

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

    suffix = col("tags.mlflow.runName").map(seed_of)
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
        known = sorted(
            c.removeprefix("metrics.") for c in runs.columns if c.startswith("metrics.") and not c.startswith("metrics.val_")
        )
        raise CompareError(f"no run has a metric {metric!r}; metrics: {', '.join(known)}")
    runs = runs.assign(_config=config_names(runs), _seed=seed_keys(runs))
    lang_cols = sorted(c for c in runs.columns if c.startswith("metrics.macro_f1_lang_"))
    extra_cols = sorted(c for c in runs.columns if re.fullmatch(r"metrics\.[^/]+/(macro_f1|ece)", c))
    rows = []
    for name, every in runs.groupby("_config", sort=False):
        g = (
            every.sort_values("start_time", kind="stable").groupby("_seed", sort=False).tail(1)
            if "start_time" in every
            else every.drop_duplicates("_seed", keep="last")
        )
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
        # the rows trained and scored on (pipeline: naming.data_digest): the same config on edited data is told apart
        row["data"] = ",".join(sorted(set(g["params.data.digest"].dropna()))) if "params.data.digest" in g else ""
        row["train_seconds"] = g["metrics.train_seconds"].mean() if "metrics.train_seconds" in g else math.nan
        row["run_ids"] = ",".join(g["run_id"])
        rows.append(row)
    board = pd.DataFrame(rows)
    return board.sort_values(f"{metric}_mean", ascending=_lower_is_better(metric), na_position="last", kind="stable").reset_index(
        drop=True
    )


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
    out[metric] = [
        (_fmt(m) + (f" ± {_fmt(s)}" if not math.isnan(s) else ""))
        for m, s in zip(board[f"{metric}_mean"], board[f"{metric}_std"])
    ]
    for c in board.columns:
        if "/" in c:  # an extra evaluation set's metric, e.g. realquotes_dev/macro_f1
            out[c] = board[c].map(_fmt)
    for c in board.columns:
        if c.startswith("macro_f1_lang_"):
            out[c.removeprefix("macro_f1_lang_")] = board[c].map(_fmt)
    if "data" in board and board["data"].astype(bool).any():
        out["data"] = board["data"]
    out["train_s"] = board["train_seconds"].map(lambda s: _fmt(s, 0))
    out["runs"] = board["run_ids"].map(lambda ids: ",".join(i[:8] for i in ids.split(",")) if short_ids else ids)
    return out


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table (pandas' to_markdown needs the optional tabulate package)."""

    def cell(v) -> str:
        return _fmt(v).replace("|", "\\|").replace("\n", " ")

    return _markdown_table([cell(c) for c in df.columns], [[cell(v) for v in row] for row in df.itertuples(index=False)])


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
