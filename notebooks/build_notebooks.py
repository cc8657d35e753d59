"""Writes the analysis notebooks from the cell sources below, without outputs, so that changes are reviewed as code.

    python notebooks/build_notebooks.py          # rewrite notebooks/*.ipynb
    python notebooks/build_notebooks.py --check  # exit 1 if a committed notebook differs from what this writes

Cell ids are fixed (nbformat would draw random ones), so rebuilding an unchanged notebook changes no byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Shared by the notebooks that read runs: the store and experiment come from the environment, as in the CLI.
TRACKING_SETUP = '''\
import os
from pathlib import Path

import matplotlib.pyplot as plt
import mlflow
import pandas as pd

import train
from train.tracking import setup_tracking

ROOT = Path(train.__file__).resolve().parents[1]
# Without MLFLOW_TRACKING_URI the project's store is <repo>/mlruns, whichever folder Jupyter was started in.
os.environ.setdefault("STANCE_MLRUNS", str(ROOT / "mlruns"))
TRACKING_URI = setup_tracking()
EXPERIMENT = os.environ.get("STANCE_EXPERIMENT", "stance-ru-az-2025")
pd.set_option("display.max_colwidth", 140)
print(f"tracking store: {TRACKING_URI}\\nexperiment: {EXPERIMENT}")'''

DATASET_OVERVIEW = [
    new_markdown_cell("""\
# 01 · Dataset overview

Counts, text lengths and label balance of the labeled statements, per language, speaker group and split.
Reads `labeled/` (or the folder in `STANCE_LABELED`) through `train.data.load_statements`, which validates every row
first: a broken row stops the notebook with its file and line."""),
    new_code_cell('''\
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from train.data import DEFAULT_LABELED_DIR, load_statements
from train.schema import LABELS

LABELED = Path(os.environ.get("STANCE_LABELED", DEFAULT_LABELED_DIR))
df = load_statements(LABELED)
df["n_chars"] = df["text"].str.len()
df["n_words"] = df["text"].str.split().str.len()
print(f"{len(df)} statements in {LABELED}: {df['language'].nunique()} languages, {df['speaker_group'].nunique()} speaker groups")'''),
    new_markdown_cell("## Counts per language and label"),
    new_code_cell('''\
pd.crosstab(df["language"], pd.Categorical(df["stance"], LABELS), margins=True, margins_name="total", dropna=False)'''),
    new_code_cell('''\
share = pd.crosstab(df["language"], pd.Categorical(df["stance"], LABELS), normalize="index", dropna=False)
ax = share.plot.barh(stacked=True, figsize=(7, 0.35 * len(share) + 1.5), color=["#55a868", "#8c8c8c", "#c44e52"])
ax.set_xlabel("share of statements")
ax.set_title("label balance per language")
ax.legend(loc="lower right", fontsize=8)
plt.tight_layout()'''),
    new_markdown_cell("## Splits (assigned by a hash of the id, so adding rows never moves old ones)"),
    new_code_cell('pd.crosstab(df["language"], df["split"], margins=True, margins_name="total")'),
    new_markdown_cell("## Speaker groups"),
    new_code_cell('''\
groups = pd.crosstab(df["speaker_group"], pd.Categorical(df["stance"], LABELS), margins=True, margins_name="total", dropna=False)
groups.sort_values("total", ascending=False)'''),
    new_code_cell('''\
share = pd.crosstab(df["speaker_group"], pd.Categorical(df["stance"], LABELS), normalize="index", dropna=False)
ax = share.loc[share.index[::-1]].plot.barh(stacked=True, figsize=(7, 0.35 * len(share) + 1.5), color=["#55a868", "#8c8c8c", "#c44e52"])
ax.set_xlabel("share of statements")
ax.set_title("label balance per speaker group")
ax.legend(loc="lower right", fontsize=8)
plt.tight_layout()'''),
    new_markdown_cell("## Text lengths"),
    new_code_cell('df.groupby("language")[["n_chars", "n_words"]].describe().round(1)'),
    new_code_cell('''\
langs = sorted(df["language"].unique())
fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(langs) + 2), 3.5))
ax.boxplot([df.loc[df["language"] == l, "n_words"] for l in langs], tick_labels=langs)
ax.set_ylabel("words per statement")
ax.set_title("statement length per language")
plt.tight_layout()'''),
    new_markdown_cell("## Sources and registers"),
    new_code_cell('pd.crosstab(df["language"], [df["source"]], margins=True, margins_name="total")'),
    new_code_cell('pd.crosstab(df["register"].replace("", "(none)"), df["stance"]).loc[lambda t: t.sum(1).sort_values(ascending=False).index]'),
]

COMPARE_RUNS = [
    new_markdown_cell("""\
# 02 · Compare runs

The finished runs of one experiment (`STANCE_EXPERIMENT`, default `stance-ru-az-2025`) from the project's MLflow store
(`MLFLOW_TRACKING_URI`, default `mlruns/`): the leaderboard `stance runs compare` prints, macro-F1 per language and per
model, and the confusion matrices the runs logged, side by side. Parent runs of seed sweeps are left out: their seeds
are the rows."""),
    new_code_cell(TRACKING_SETUP),
    new_code_cell('''\
from train.reports.leaderboard import display_frame, leaderboard, load_runs

runs = load_runs([EXPERIMENT])
if runs.empty:
    raise RuntimeError(f"no finished runs in experiment {EXPERIMENT!r} of {TRACKING_URI}: train one first (stance train)")
board = leaderboard(runs, "macro_f1")
print(f"{len(runs)} finished runs, {len(board)} configurations")
display_frame(board)'''),
    new_markdown_cell("## macro-F1 per model (mean over seeds; bars show the standard deviation)"),
    new_code_cell('''\
fig, ax = plt.subplots(figsize=(7, 0.45 * len(board) + 1.5))
order = board.iloc[::-1]
ax.barh(order["config"], order["macro_f1_mean"], xerr=order["macro_f1_std"].fillna(0), color="#4c72b0", capsize=3)
for y, (m, n) in enumerate(zip(order["macro_f1_mean"], order["n_seeds"])):
    ax.text(m + 0.01, y, f"{m:.3f} (n={n})", va="center", fontsize=8)
ax.set_xlim(0, 1.1)
ax.set_xlabel("macro-F1 on the eval set")
plt.tight_layout()'''),
    new_markdown_cell("""\
## macro-F1 per language and model

The five core languages one by one, the other languages pooled (a language with three test rows scores 0 or 1 by
chance), each with its number of test rows (n) and the spread over seeds. The table below has every language.
Runs logged before the at-a-glance summary existed (`f1/<language>` metrics) are left out of the figure."""),
    new_code_cell('''\
from train.schema import CORE_LANGUAGES

groups = [g for g in ("all", *CORE_LANGUAGES, "other") if f"metrics.f1/{g}" in runs.columns]
cfg = runs.assign(config=runs["tags.mlflow.runName"].str.replace(r"-s\\d+$", "", regex=True))
counts = {}
for text in cfg.get("tags.n_eval", pd.Series(dtype=str)).dropna():  # "en 120 · ru 118 · ... · all 742"
    counts.update(dict(part.rsplit(" ", 1) for part in text.split(" · ")))
if groups:
    means = cfg.groupby("config")[[f"metrics.f1/{g}" for g in groups]].mean()
    stds = cfg.groupby("config")[[f"metrics.f1/{g}" for g in groups]].std().fillna(0)
    fig, ax = plt.subplots(figsize=(1.1 * len(groups) * max(1, len(means)) ** 0.5 + 3, 3.8))
    width = 0.8 / len(means)
    for i, config in enumerate(means.index):
        x = [j + i * width for j in range(len(groups))]
        ax.bar(x, means.loc[config], width, yerr=stds.loc[config], capsize=2, label=config[:45])
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(groups))], [f"{g}\\nn={counts.get(g, '?')}" for g in groups])
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("macro-F1 (test split)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))
    plt.tight_layout()
lang_cols = [c for c in board.columns if c.startswith("macro_f1_lang_")]
langs = [c.removeprefix("macro_f1_lang_") for c in lang_cols]
order = [l for l in CORE_LANGUAGES if l in langs] + sorted(set(langs) - set(CORE_LANGUAGES))
board.set_index("config")[[f"macro_f1_lang_{l}" for l in order]].rename(columns=lambda c: c.removeprefix("macro_f1_lang_")).round(3)'''),
    new_markdown_cell("## Confusion matrices of each configuration's best seed (as logged by the runs)"),
    new_code_cell('''\
import tempfile

import matplotlib.image as mpimg

by_id = runs.set_index("run_id")
best = [max(ids.split(","), key=lambda r: by_id.loc[r, "metrics.macro_f1"]) for ids in board["run_ids"]][:6]
cols = min(3, len(best))  # three to a row: readable at any screen width
rows = -(-len(best) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.2 * rows), squeeze=False)
with tempfile.TemporaryDirectory() as tmp:
    for ax, (rid, name) in zip(axes.flat, zip(best, board["config"])):
        path = mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="eval/confusion_matrix.png", dst_path=f"{tmp}/{rid}")
        ax.imshow(mpimg.imread(path))
        ax.set_title(f"{name[:40]}\\n{rid[:8]}  macro-F1 {by_id.loc[rid, 'metrics.macro_f1']:.3f}", fontsize=8)
for ax in axes.flat:
    ax.axis("off")
plt.tight_layout()'''),
    new_markdown_cell("## Per-class F1"),
    new_code_cell('''\
from train.schema import LABELS

cls = runs.assign(config=runs["tags.mlflow.runName"].str.replace(r"-s\\d+$", "", regex=True))
cls.groupby("config")[[f"metrics.f1_{l}" for l in LABELS]].mean().rename(columns=lambda c: c.removeprefix("metrics.")).round(3)'''),
]

ERROR_ANALYSIS = [
    new_markdown_cell("""\
# 03 · Error analysis of one run

The run in `STANCE_RUN_ID`, else the best finished run (macro-F1) of `STANCE_EXPERIMENT`. Reads the predictions the
run logged on its eval set (`eval/predictions.json`): the most confident mistakes, confusions per language, and
where errors concentrate."""),
    new_code_cell(TRACKING_SETUP),
    new_code_cell('''\
from train.reports.leaderboard import load_runs
from train.schema import LABELS

RUN_ID = os.environ.get("STANCE_RUN_ID")
if not RUN_ID:
    runs = load_runs([EXPERIMENT])
    if runs.empty:
        raise RuntimeError(f"no finished runs in experiment {EXPERIMENT!r} of {TRACKING_URI}: train one first (stance train)")
    RUN_ID = runs.sort_values("metrics.macro_f1", ascending=False)["run_id"].iloc[0]
run = mlflow.get_run(RUN_ID)
table = mlflow.artifacts.load_dict(f"runs:/{RUN_ID}/eval/predictions.json")
preds = pd.DataFrame(table["data"], columns=table["columns"])
preds["wrong"] = preds["gold"] != preds["predicted"]
print(f"run {RUN_ID} ({run.info.run_name}): macro-F1 {run.data.metrics['macro_f1']:.3f}, "
      f"{preds['wrong'].sum()} of {len(preds)} eval statements wrong")'''),
    new_markdown_cell("## The most confident mistakes"),
    new_code_cell('''\
mistakes = preds[preds["wrong"]].sort_values("confidence", ascending=False)
mistakes[["id", "language", "speaker_group", "gold", "predicted", "confidence", "text"]].head(20)'''),
    new_markdown_cell("""\
## Confusions per language (rows: gold, columns: predicted)

The core languages one by one and the other languages pooled, three to a row; the table after it counts every
language's errors."""),
    new_code_cell('''\
from sklearn.metrics import ConfusionMatrixDisplay

from train.schema import CORE_LANGUAGES

core = [l for l in CORE_LANGUAGES if (preds["language"] == l).any()]
panels = [(l, preds[preds["language"] == l]) for l in core]
rest = preds[~preds["language"].isin(CORE_LANGUAGES)]
if len(rest):
    panels.append((f"other ({rest['language'].nunique()} languages)", rest))
cols = min(3, len(panels))
rows = -(-len(panels) // cols)
fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols, 3.6 * rows), squeeze=False)
for ax, (name, part) in zip(axes.flat, panels):
    ConfusionMatrixDisplay.from_predictions(part["gold"], part["predicted"], labels=list(LABELS), ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(f"{name} (n={len(part)}, error {part['wrong'].mean():.0%})", fontsize=9)
    ax.tick_params(axis="x", labelrotation=45)
for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
plt.tight_layout()
preds.groupby("language")["wrong"].agg(n="size", errors="sum", error_rate="mean").sort_values("n", ascending=False).round(3)'''),
    new_markdown_cell("## Which gold→predicted confusions are most common, per language"),
    new_code_cell('''\
(mistakes.groupby(["language", "gold", "predicted"]).size().rename("n").reset_index()
 .sort_values(["language", "n"], ascending=[True, False]).groupby("language").head(3).reset_index(drop=True))'''),
    new_markdown_cell("## Error rate per speaker group"),
    new_code_cell('''\
preds.groupby("speaker_group")["wrong"].agg(n="size", error_rate="mean").sort_values("error_rate", ascending=False).round(3)'''),
    new_markdown_cell("## Confidence of right and wrong predictions (a calibrated model is less sure when wrong)"),
    new_code_cell('''\
fig, ax = plt.subplots(figsize=(6, 3.2))
bins = [i / 20 for i in range(21)]
ax.hist(preds.loc[~preds["wrong"], "confidence"], bins=bins, alpha=0.6, label="right")
ax.hist(preds.loc[preds["wrong"], "confidence"], bins=bins, alpha=0.6, label="wrong")
ax.set_xlabel("confidence of the predicted label")
ax.legend()
plt.tight_layout()'''),
    new_markdown_cell("""\
## Why the model was so sure: the words behind the most confident mistakes

`stance explain` for each of the five most confident mistakes (integrated gradients on the word embeddings for a
transformer, exact linear contributions for the TF-IDF baseline): the words that pushed the prediction toward the
wrong label, and those that pushed toward the right one. Same as
`stance explain --model runs:/<run_id>/model --text "..."` on the command line."""),
    new_code_cell('''\
import tempfile

from train.findings.explain import explain
from train.tracking.registry import load_for_predict

model, *_ = load_for_predict(f"runs:/{RUN_ID}/model", Path(tempfile.mkdtemp(prefix="stance-explain-")), device="cpu")
# a run without mistakes (a tiny demo model) explains its least confident predictions instead
chosen = mistakes.head(5) if len(mistakes) else preds.sort_values("confidence").head(5)
rows = []
for _, m in chosen.iterrows():
    e = explain(model, m["text"], n_steps=32)
    words = lambda label: ", ".join(f"{w} ({s:+.2f})" for w, s in e.top(label, 4)) or "(none)"
    rows.append({"id": m["id"], "gold": m["gold"], "predicted": m["predicted"], "confidence": m["confidence"],
                 "toward the prediction": words(m["predicted"]), "toward the gold label": words(m["gold"])})
print(f"explained {len(rows)} {'mistakes' if len(mistakes) else 'least confident predictions (no mistakes)'}")
pd.DataFrame(rows)'''),
]

STANCE_OVER_TIME = [
    new_markdown_cell("""\
# 04 · Stance over time, corrected for classifier error

What `stance analyze` does with the output of `stance predict`: shares of conciliatory / neutral / hostile statements
per speaker group and week, corrected for the classifier's errors (quapy's PACC), with 95% intervals.

The demo collection is made up here: 2,950 statements from three speaker groups over ten weeks, in which military
bloggers turn more hostile after week 5 and officials become more conciliatory. Instead of running a model, each
statement's probabilities are drawn from a fixed confusion (the classifier calls a quarter of neutral statements
hostile), so that the **true** shares are known and the naive count, the corrected estimate and the truth can be
compared. With a real model you would run `stance predict` first; everything below is the same."""),
    new_code_cell('''\
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Image, display

from train.schema import LABELS

rng = np.random.default_rng(0)
WORK = Path(tempfile.mkdtemp(prefix="stance-04-"))
# columns: true class; the predicted class is drawn from the column of the true one
CONFUSION = np.array([[0.80, 0.10, 0.05], [0.15, 0.65, 0.10], [0.05, 0.25, 0.85]])


def scored(y):
    """Probabilities a classifier with CONFUSION would give (its top probability 0.5-0.9)."""
    pred = np.array([rng.choice(3, p=CONFUSION[:, t]) for t in y])
    top = rng.uniform(0.5, 0.9, len(y))
    p = np.repeat(((1 - top) / 2)[:, None], 3, 1)
    p[np.arange(len(y)), pred] = top
    return p


def mix(group, week):
    """The true mix (conciliatory, neutral, hostile) of a group in a week."""
    if group == "russian_military_blogger":
        return [0.05, 0.65, 0.30] if week < 5 else [0.05, 0.45, 0.50]
    if group == "azerbaijani_official":
        return [0.15, 0.75, 0.10] if week < 5 else [0.35, 0.60, 0.05]
    return [0.10, 0.80, 0.10]


rows = []
for group, per_week in [("russian_military_blogger", 150), ("azerbaijani_official", 120), ("russian_state_media", 25)]:
    for week in range(10):
        y = rng.choice(3, per_week, p=mix(group, week))
        days = pd.Timestamp("2025-06-30") + pd.to_timedelta(7 * week + rng.integers(0, 7, per_week), unit="D")
        p = scored(y)
        rows.append(pd.DataFrame({"speaker_group": group, "date": days.strftime("%Y-%m-%d"), "true_stance": [LABELS[i] for i in y],
                                  "pred_stance": [LABELS[i] for i in p.argmax(1)], **{f"prob_{l}": p[:, i] for i, l in enumerate(LABELS)}}))
collection = pd.concat(rows, ignore_index=True)
collection.drop(columns="true_stance").to_parquet(WORK / "predictions.parquet")  # what `stance predict` would write

# a labeled random sample of the same collection: 300 statements a person labeled, with the model's probabilities
sample = collection.sample(300, random_state=1)
sample.rename(columns={"true_stance": "stance"}).to_csv(WORK / "validation.csv", index=False)
print(f"{len(collection)} statements, {collection['speaker_group'].nunique()} groups; labeled sample of {len(sample)}")'''),
    new_markdown_cell("## `stance analyze`, as on the command line"),
    new_code_cell('''\
cmd = [sys.executable, "-m", "train.cli", "analyze", str(WORK / "predictions.parquet"), "--by", "speaker_group",
       "--time", "date", "--freq", "W", "--validation", str(WORK / "validation.csv"), "--output", str(WORK / "shares.csv")]
r = subprocess.run(cmd, capture_output=True, text=True)
print(r.stderr)
r.check_returncode()
shares = pd.read_csv(WORK / "shares.csv")
shares.head(9)'''),
    new_markdown_cell("## Share over time per group, with 95% intervals (`shares_time.png`)"),
    new_code_cell('display(Image(filename=str(WORK / "shares_time.png")))'),
    new_markdown_cell("## Group x stance over the whole period (`shares_heatmap.png`)"),
    new_code_cell('display(Image(filename=str(WORK / "shares_heatmap.png")))'),
    new_markdown_cell("""\
## Naive counting vs the corrected estimate vs the truth

Hostile share of the military bloggers per week. Counting predicted labels overstates hostility (neutral statements
called hostile), and by a different amount when the true mix changes; the corrected estimate follows the truth, and
its interval covers it."""),
    new_code_cell('''\
collection["period"] = pd.to_datetime(collection["date"]).dt.to_period("W").astype(str)
truth = (collection.groupby(["speaker_group", "period"])["true_stance"].value_counts(normalize=True)
         .rename("true_share").reset_index().rename(columns={"true_stance": "stance"}))
both = shares.merge(truth, on=["speaker_group", "period", "stance"], how="left").fillna({"true_share": 0.0})
s = both[(both.speaker_group == "russian_military_blogger") & (both.stance == "hostile")].sort_values("period")
fig, ax = plt.subplots(figsize=(8, 3.2))
ax.plot(s["period"].str[:10], s["true_share"], "k-", lw=2, label="truth")
ax.plot(s["period"].str[:10], s["share_naive"], "o--", color="grey", label="naive count")
ax.plot(s["period"].str[:10], s["share"], "o-", color="#d95f02", label="corrected (PACC)")
ax.fill_between(s["period"].str[:10], s["ci_low"], s["ci_high"], color="#d95f02", alpha=0.2, label="95% interval")
ax.set_ylabel("hostile share")
ax.tick_params(axis="x", labelrotation=45)
ax.legend(fontsize=8)
plt.tight_layout()
err = both.assign(naive=(both.share_naive - both.true_share).abs(), corrected=(both.share - both.true_share).abs(),
                  covered=(both.ci_low <= both.true_share) & (both.true_share <= both.ci_high))
print(f"mean absolute error: naive {err.naive.mean():.3f}, corrected {err.corrected.mean():.3f}; "
      f"95% intervals holding the truth: {err.covered.mean():.0%}")'''),
    new_markdown_cell("""\
## Small groups are flagged, not hidden

`russian_state_media` has 25 statements a week: each of its rows is marked `small_group` and its intervals are wide."""),
    new_code_cell('''\
widths = shares.assign(interval_width=shares.ci_high - shares.ci_low)
widths.groupby("speaker_group").agg(n_per_week=("n", "mean"), small_group=("small_group", "all"),
                                    mean_interval_width=("interval_width", "mean")).round(2)'''),
]

NOTEBOOKS = {
    "01_dataset_overview.ipynb": DATASET_OVERVIEW,
    "02_compare_runs.ipynb": COMPARE_RUNS,
    "03_error_analysis.ipynb": ERROR_ANALYSIS,
    "04_stance_over_time.ipynb": STANCE_OVER_TIME,
}


def build(name: str) -> str:
    nb = new_notebook(cells=[c.copy() for c in NOTEBOOKS[name]])
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path, text = HERE / name, build(name)
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            tmp = path.with_suffix(".ipynb.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
            print(f"wrote {path}")
    if stale:
        print(f"out of date (run python notebooks/build_notebooks.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
