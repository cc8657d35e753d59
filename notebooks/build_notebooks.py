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
]

NOTEBOOKS = {
    "01_dataset_overview.ipynb": DATASET_OVERVIEW,
    "02_compare_runs.ipynb": COMPARE_RUNS,
    "03_error_analysis.ipynb": ERROR_ANALYSIS,
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
