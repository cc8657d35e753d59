"""Evaluation tables from finished runs: cross-lingual transfer gaps from held-out runs, and the UMSAB benchmark table
beside its published numbers. Computed from run frames (train.tracking.queries), so they can be rebuilt at any time
from the tracking store."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from train.formats import markdown_table as _markdown_table
from train.tracking.queries import top_level_runs_frame

LANG_METRIC = "macro_f1_lang_"


# -- reading runs --------------------------------------------------------------------------------------------------


def finished_runs(experiment: str) -> pd.DataFrame:
    """Top-level FINISHED runs of an experiment, newest first (a seed sweep's parent stands for its children)."""
    return top_level_runs_frame(experiment)


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

TRANSFER_COLUMNS = [
    "model_family",
    "language",
    "in_language",
    "in_language_std",
    "held_out",
    "held_out_std",
    "gap",
    "english_only",
    "english_only_std",
    "english_only_gap",
    "in_language_run",
    "held_out_run",
    "english_only_run",
]


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
            for role, row in (
                ("in_language", reference),
                ("held_out", held_out.get(lang)),
                ("english_only", english_only if lang in from_english else None),
            ):
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
    return _markdown_table(header, rows, right_from=align_right_from)


def transfer_markdown(summary: pd.DataFrame) -> str:
    header = ["model", "language", "in-language", "held out", "gap", "English only", "gap (English only)"]
    rows = [
        [
            r.model_family,
            r.language,
            _fmt(r.in_language, r.in_language_std),
            _fmt(r.held_out, r.held_out_std),
            _fmt(r.gap),
            _fmt(r.english_only, r.english_only_std),
            _fmt(r.english_only_gap),
        ]
        for r in summary.itertuples()
    ]
    note = (
        "\nmacro-F1. in-language: trained on all languages, scored on the language's test rows; held out: trained "
        "without the language, scored on all its rows; gap = in-language − held out. ± = sample std over seeds.\n"
    )
    return markdown_table(header, rows, align_right_from=2) + note


# -- UMSAB -----------------------------------------------------------------------------------------------------------

UMSAB_LANGUAGES = {
    "ar": "Arabic",
    "en": "English",
    "fr": "French",
    "de": "German",
    "hi": "Hindi",
    "it": "Italian",
    "pt": "Portuguese",
    "es": "Spanish",
}
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
