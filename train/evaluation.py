"""Evaluation beyond one run: seed sweeps (mean and standard deviation), cross-lingual transfer gaps from held-out
runs, and the UMSAB benchmark table beside its published numbers.

Everything here reads and writes MLflow runs; the tables are computed from `mlflow.search_runs` frames, so they can
be rebuilt at any time from the tracking store.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from train.config import Config, flat_params

# Metrics logged once per epoch; everything else a run logs is a final metric that a seed sweep aggregates.
PER_EPOCH_PREFIXES = ("val_", "train_loss", "learning_rate")
LANG_METRIC = "macro_f1_lang_"


# -- seed sweeps -----------------------------------------------------------------------------------------------------

def seed_list(first: int, n: int) -> list[int]:
    if n < 1:
        raise ValueError(f"--seeds must be >= 1, got {n}")
    return [first + i for i in range(n)]


def parent_run_name(cfg: Config, n: int) -> str:
    from train.training import default_run_name

    base = re.sub(r"-s\d+$", "", cfg.run_name or default_run_name(cfg))
    return f"{base}-x{n}seeds"


def final_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if not k.startswith(PER_EPOCH_PREFIXES)}


def aggregate_seed_metrics(per_seed: list[dict[str, float]]) -> dict[str, float]:
    """`<m>_mean`, `<m>_std` (sample standard deviation, ddof=1; 0 for one seed) and `<m>` = mean, for every final
    metric that all seeds logged."""
    if not per_seed:
        return {}
    common = set.intersection(*(set(final_metrics(m)) for m in per_seed))
    out = {}
    for name in sorted(common):
        values = np.array([m[name] for m in per_seed], dtype=float)
        mean, std = float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.update({name: mean, f"{name}_mean": mean, f"{name}_std": std})
    return out


def _parent_tags(cfg: Config, parts: dict, seeds: list[int], config_path: str | None) -> dict[str, str]:
    """The tags leaderboards and the transfer summary filter on, so that a sweep's parent stands in for its seeds."""
    from train import tracking
    from train.model import pick_device
    from train.training import model_family

    held = cfg.data.holdout_languages + cfg.data.holdout_speaker_groups
    tags = {
        "stance.parent": "true", **tracking.process_tags(),
        "model_family": model_family(cfg), "model_kind": cfg.model.kind,
        "languages": ",".join(sorted(set(parts["train"]["language"]))),
        "eval_languages": ",".join(sorted(set(parts["eval"]["language"]))),
        "eval_split": "holdout" if held else cfg.data.eval_split, "holdout": ",".join(held) or "none",
        "seeds": ",".join(map(str, seeds)), "device": pick_device(), **tracking.git_info(),
    }
    if config_path:
        tags["config_file"] = str(config_path)
    return tags


def run_seeds(cfg: Config, n_seeds: int, config_path: str | None = None, quiet: bool = False) -> str:
    """Train the config with seeds seed, seed+1, ... as nested child runs under one parent run that holds the mean and
    standard deviation of every final metric. Returns the parent run id.

    Only the first seed's model is registered (after every seed has finished), so a sweep adds one registry version.
    If any seed fails the parent is marked FAILED (KILLED on interrupt) and the error re-raised.
    """
    import mlflow

    from train import tracking
    from train.training import prepare_data, run_training

    seeds = seed_list(cfg.train.seed, n_seeds)
    _, parts = prepare_data(cfg)  # invalid data fails before the parent run opens
    tracking.setup_tracking()
    exp_id = tracking.get_experiment_id(cfg.experiment)
    tracking.reconcile_stale_runs(exp_id)

    parent = mlflow.start_run(experiment_id=exp_id, run_name=parent_run_name(cfg, n_seeds))
    parent_id = parent.info.run_id
    current = None
    # the parent must never be left RUNNING, nor FINISHED after a failed seed
    with tracking.closing_run(lambda: f"seed {current} failed: " if current is not None else ""):
        mlflow.set_tags(_parent_tags(cfg, parts, seeds, config_path))
        params = flat_params(cfg)
        params.update({"train.seed": ",".join(map(str, seeds)), "n_seeds": n_seeds,
                       "n_train": len(parts["train"]), "n_val": len(parts["val"]), "n_eval": len(parts["eval"])})
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        child_ids, per_seed = [], []
        for seed in seeds:
            current = seed
            child_cfg = dataclasses.replace(cfg, register_as=None, run_name=_child_name(cfg, seed),
                                            train=dataclasses.replace(cfg.train, seed=seed))
            rid = run_training(child_cfg, config_path=config_path, parent_run_id=parent_id, quiet=quiet)
            child_ids.append(rid)
            per_seed.append(mlflow.tracking.MlflowClient().get_run(rid).data.metrics)
        current = None
        summary = aggregate_seed_metrics(per_seed)
        mlflow.log_metrics(summary)
        table = pd.DataFrame([{"seed": s, "run_id": r, **final_metrics(m)} for s, r, m in zip(seeds, child_ids, per_seed)])
        mlflow.log_table(table, "seeds/per_seed_metrics.json")
        if cfg.register_as:
            version = mlflow.register_model(f"runs:/{child_ids[0]}/model", cfg.register_as)
            mlflow.set_tags({"stance.registered_child": child_ids[0], "stance.registered_version": str(version.version)})
        if not quiet:
            print(f"parent run {parent_id} ({n_seeds} seeds): macro_f1={summary['macro_f1_mean']:.4f} "
                  f"± {summary['macro_f1_std']:.4f} (sample std)")
    return parent_id


def _child_name(cfg: Config, seed: int) -> str | None:
    if cfg.run_name is None:
        return None  # default_run_name already ends in -s<seed>
    return re.sub(r"-s\d+$", "", cfg.run_name) + f"-s{seed}"


# -- reading runs --------------------------------------------------------------------------------------------------

def finished_runs(experiment: str) -> pd.DataFrame:
    """Top-level FINISHED runs of an experiment, newest first (a seed sweep's parent stands for its children)."""
    import mlflow

    from train import tracking

    tracking.setup_tracking()
    exp = mlflow.get_experiment_by_name(experiment)
    if exp is None:
        raise LookupError(f"no MLflow experiment named {experiment!r} in {mlflow.get_tracking_uri()}")
    runs = mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], output_format="pandas")
    if "tags.mlflow.parentRunId" in runs.columns:
        runs = runs[runs["tags.mlflow.parentRunId"].isna()]
    return runs.reset_index(drop=True)


def _column(runs: pd.DataFrame, name: str, default: str = "") -> pd.Series:
    """A tag column with blanks filled (search_runs omits a tag column that no run has)."""
    if name not in runs.columns:
        return pd.Series(default, index=runs.index, dtype=object)
    return runs[name].fillna(default).astype(str)


def _tag(row, name: str, default: str = "") -> str:
    v = row.get(f"tags.{name}")
    return default if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def _metric(row, name: str) -> float:
    v = row.get(f"metrics.{name}")
    return float("nan") if v is None else float(v)


def _split(value: str) -> set[str]:
    return {v for v in value.split(",") if v and v != "none"}


# -- cross-lingual transfer ------------------------------------------------------------------------------------------

TRANSFER_COLUMNS = ["model_family", "language", "in_language", "in_language_std", "held_out", "held_out_std", "gap",
                    "english_only", "english_only_std", "english_only_gap", "in_language_run", "held_out_run", "english_only_run"]


def transfer_summary(experiment: str = "stance-transfer", runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per model family and language: in-language macro-F1 (the newest run trained on all languages, its
    `macro_f1_lang_<xx>` on the test split), held-out macro-F1 (the newest run with `holdout` = xx, evaluated on every
    xx row) and gap = in_language - held_out; plus the same from the newest English-only run (trained on en alone,
    evaluated on the other languages). Missing runs leave NaN. Sweep parents contribute their seed mean and std."""
    runs = finished_runs(experiment) if runs is None else runs
    out = []
    for family, fam in runs.groupby(_column(runs, "tags.model_family"), sort=True):
        reference, held_out, english_only = None, {}, None
        for _, row in fam.iterrows():  # newest first: keep the first of each role
            holdout, evaluated = _split(_tag(row, "holdout", "none")), _split(_tag(row, "eval_languages"))
            if not holdout:
                if reference is None and _tag(row, "eval_split") == "test":
                    reference = row
            elif holdout == evaluated:  # a language holdout (a speaker-group holdout evaluates on many languages)
                if len(holdout) == 1:
                    held_out.setdefault(next(iter(holdout)), row)
                elif english_only is None and _tag(row, "languages") == "en":
                    english_only = row
        from_english = _split(_tag(english_only, "eval_languages")) if english_only is not None else set()
        for lang in sorted(set(held_out) | from_english):
            key = f"{LANG_METRIC}{lang}"
            rec = {"model_family": family, "language": lang}
            for role, row in (("in_language", reference), ("held_out", held_out.get(lang)),
                              ("english_only", english_only if lang in from_english else None)):
                rec[role] = _metric(row, key) if row is not None else float("nan")
                rec[f"{role}_std"] = _metric(row, f"{key}_std") if row is not None else float("nan")
                rec[f"{role}_run"] = row["run_id"] if row is not None else None
            rec["gap"] = rec["in_language"] - rec["held_out"]
            rec["english_only_gap"] = rec["in_language"] - rec["english_only"]
            out.append(rec)
    return pd.DataFrame(out, columns=TRANSFER_COLUMNS)


def _fmt(value: float, std: float = float("nan"), scale: float = 1.0, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "–"
    text = f"{value * scale:.{digits}f}"
    return text if std is None or math.isnan(std) else f"{text} ± {std * scale:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]], align_right_from: int = 1) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < align_right_from else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def transfer_markdown(summary: pd.DataFrame) -> str:
    header = ["model", "language", "in-language", "held out", "gap", "English only", "gap (English only)"]
    rows = [[r.model_family, r.language, _fmt(r.in_language, r.in_language_std), _fmt(r.held_out, r.held_out_std),
             _fmt(r.gap), _fmt(r.english_only, r.english_only_std), _fmt(r.english_only_gap)]
            for r in summary.itertuples()]
    note = ("\nmacro-F1. in-language: trained on all languages, scored on the language's test rows; held out: trained "
            "without the language, scored on all its rows; gap = in-language − held out. ± = sample std over seeds.\n")
    return markdown_table(header, rows, align_right_from=2) + note


# -- UMSAB -----------------------------------------------------------------------------------------------------------

UMSAB_LANGUAGES = {"ar": "Arabic", "en": "English", "fr": "French", "de": "German", "hi": "Hindi", "it": "Italian",
                   "pt": "Portuguese", "es": "Spanish"}
# Published macro-F1 on the test split (x100), from UMSAB's README (cardiffnlp/xlm-t leaderboard, Barbieri et al.,
# LREC 2022). "multi": trained on all eight languages; fastText is the monolingual baseline. The README's
# "All languages" row is the mean of the eight, within rounding (fastText 408.3 / 8 = 51.04 -> 51.0; XLM-R multi
# 66.74 from the rounded cells, 66.8 published from the unrounded ones).
UMSAB_PUBLISHED = {
    "XLM-R multi": {"ar": 64.3, "en": 68.5, "fr": 70.5, "de": 72.8, "hi": 53.4, "it": 68.6, "pt": 69.8, "es": 66.0},
    "XLM-Tw multi": {"ar": 66.9, "en": 70.6, "fr": 71.2, "de": 77.3, "hi": 56.4, "it": 69.1, "pt": 75.4, "es": 67.9},
    "fastText mono": {"ar": 46.0, "en": 50.9, "fr": 54.8, "de": 59.6, "hi": 37.1, "it": 54.7, "pt": 55.1, "es": 50.1},
}
UMSAB_PUBLISHED_AVERAGE = {"XLM-R multi": 66.8, "XLM-Tw multi": 69.4, "fastText mono": 51.0}


def umsab_table(experiment: str = "umsab", runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rows: the eight UMSAB languages and "Average" (mean of the eight, as published). Columns: the newest finished
    run per model family evaluated on the test split (macro-F1 x100; `<family> std` beside a seed sweep), then the
    published columns."""
    runs = finished_runs(experiment) if runs is None else runs
    index = [*UMSAB_LANGUAGES.values(), "Average"]
    table = pd.DataFrame(index=pd.Index(index, name="language"))
    runs = runs[(_column(runs, "tags.eval_split") == "test") & (_column(runs, "tags.holdout", "none") == "none")]
    for family, fam in runs.groupby(_column(runs, "tags.model_family"), sort=True):
        row = fam.iloc[0]  # newest
        values = [_metric(row, f"{LANG_METRIC}{code}") * 100 for code in UMSAB_LANGUAGES]
        stds = [_metric(row, f"{LANG_METRIC}{code}_std") * 100 for code in UMSAB_LANGUAGES]
        table[f"{family} (ours)"] = [*values, float(np.mean(values))]
        if not all(math.isnan(s) for s in stds):
            # the std of the average over seeds is not the mean of per-language stds; leave it out rather than guess
            table[f"{family} (ours) std"] = [*stds, float("nan")]
        table.attrs.setdefault("runs", {})[f"{family} (ours)"] = row["run_id"]
    for name, per_lang in UMSAB_PUBLISHED.items():
        table[name] = [*(per_lang[c] for c in UMSAB_LANGUAGES), UMSAB_PUBLISHED_AVERAGE[name]]
    return table


def umsab_markdown(table: pd.DataFrame) -> str:
    ours = [c for c in table.columns if c.endswith("(ours)")]
    shown = ours + [c for c in table.columns if c in UMSAB_PUBLISHED]
    rows = []
    for lang, r in table.iterrows():
        cells = [_fmt(r[c], r.get(f"{c} std", float("nan")), digits=1) for c in shown]
        rows.append([f"**{lang}**" if lang == "Average" else str(lang), *cells])
    runs = table.attrs.get("runs", {})
    note = "\nmacro-F1 x100 on UMSAB test (870 tweets per language). Average = mean of the eight languages. "
    note += "Published columns: UMSAB README (XLM-T, Barbieri et al., LREC 2022).\n"
    note += "".join(f"- {c}: run `{rid}`\n" for c, rid in runs.items())
    if not ours:
        note += "- no finished run in this experiment yet: `stance train configs/umsab-baseline.yaml`\n"
    return markdown_table(["language", *shown], rows) + note


# -- output ----------------------------------------------------------------------------------------------------------

def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write via a temporary file in the same folder and os.replace, so a reader never sees half a table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
