"""Comparing at a glance, citing and moving: per-language macro-F1 with n and intervals, the summary a run logs for the
MLflow UI, the model identity in predictions and reports, `stance models export`, CITATION.cff, and a project folder
that was moved or copied (the browser side of the UI view is in tests/test_ui_browser.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import REPO, make_rows, tiny_overrides, write_jsonl
from train.cli import app
from train.metrics import bootstrap_macro_f1, macro_f1_by_group
from train.schema import LABELS

PROBS = [f"prob_{l}" for l in LABELS]


def test_macro_f1_by_group_counts_rows_and_matches_hand_computed_values():
    # en: one conciliatory row predicted neutral; de (not a core language): two neutral rows, both right
    y = np.array([0, 1, 2, 0, 1, 1])
    p = np.array([0, 1, 2, 1, 1, 1])
    langs = np.array(["en", "en", "en", "en", "de", "de"])
    groups = {g["group"]: g for g in macro_f1_by_group(y, p, langs)}
    assert list(groups) == ["en", "other", "all"]  # core languages first, the rest pooled, then all rows
    assert [groups[k]["n"] for k in groups] == [4, 2, 6]
    assert groups["en"]["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert groups["other"]["macro_f1"] == pytest.approx(1.0)  # over the classes present, as macro_f1_lang_<xx>
    assert groups["all"]["macro_f1"] == pytest.approx((2 / 3 + 6 / 7 + 1) / 3)
    for g in groups.values():
        assert g["ci_low"] <= g["macro_f1"] <= g["ci_high"]
    # the "all" interval is the one the run logs as macro_f1_ci_low / _high, to the last digit
    rng = np.random.default_rng(3)
    y, p = rng.integers(0, 3, 150), rng.integers(0, 3, 150)
    whole = macro_f1_by_group(y, p, rng.choice(["en", "ru", "fr"], 150), n_boot=200)[-1]
    assert (whole["ci_low"], whole["ci_high"]) == bootstrap_macro_f1(y, p, n=200)


def test_per_language_figure_puts_core_languages_first_with_their_n_and_pales_small_ones():
    from train.tracking.plots import close, per_language_bars

    m = {"macro_f1": 0.8, "macro_f1_lang_de": 1.0, "macro_f1_lang_en": 0.9, "macro_f1_lang_ru": 0.7, "macro_f1_lang_az": 0.85}
    fig = per_language_bars(m, "eval", np.array(["en"] * 100 + ["ru"] * 90 + ["de"] * 3 + ["az"] * 80))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["en\n100", "ru\n90", "az\n80", "de\n3"]
    colors = [tuple(p.get_facecolor()) for p in ax.patches]
    assert colors[0] == colors[1] == colors[2] != colors[3]  # 3 rows: a pale bar
    close(fig)


def test_a_run_logs_the_summary_the_runs_view_shows_first_and_a_comparison_figure_at_the_root(mlflow_store):
    import mlflow
    from mlflow.tracking import MlflowClient

    from train.tracking import log_evaluation, setup_tracking
    from train.tracking.server import metrics_view

    setup_tracking()
    rows = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(8)],
            "text": ["t"] * 8,
            "language": ["uk", "uk", "en", "en", "en", "ar", "ar", "de"],
            "speaker_group": ["other"] * 8,
            "stance": ["hostile", "neutral", "conciliatory", "neutral", "hostile", "neutral", "neutral", "hostile"],
        }
    )
    proba = np.full((8, 3), 0.1)
    proba[np.arange(8), [2, 2, 0, 1, 2, 1, 0, 2]] = 0.8  # wrong: row 1 (uk) and row 6 (ar)
    from train.metrics import evaluation_metrics

    y = rows["stance"].map(LABELS.index).to_numpy()
    metrics = evaluation_metrics(y, proba, rows["language"].tolist())
    exp = mlflow.create_experiment("glance", artifact_location=(mlflow_store / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metrics(metrics)
        log_evaluation(rows, proba, metrics)
    got = MlflowClient().get_run(run.info.run_id)
    m = got.data.metrics
    assert m["f1/en"] == 1.0 and m["f1/uk"] == 0.333  # uk: hostile right, neutral called hostile: (2/3 + 0) / 2, 3 decimals
    assert m["f1/other"] == round(macro_f1_by_group(y, proba.argmax(1), rows["language"])[2]["macro_f1"], 3)
    assert m["f1/all"] == round(metrics["macro_f1"], 3)
    assert got.data.tags["n_eval"] == "en 3 · uk 2 · other 3 · all 8"
    root = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert "summary_eval.png" in root  # the compare view lists root files only
    key = metrics_view(exp)
    view = json.loads(mlflow.get_experiment(exp).tags[f"mlflow.sharedViewState.{key}"])
    assert view["selectedColumns"][:5] == [
        "metrics.`f1/all`",
        "metrics.`f1/en`",
        "metrics.`f1/uk`",
        "metrics.`f1/other`",
        "tags.`n_eval`",
    ]
    assert not any("macro_f1_lang_ar" in c for c in view["selectedColumns"])


def test_a_moved_store_is_refused_with_the_fix_and_relocate_repairs_it(mlflow_store, tmp_path, monkeypatch):
    import mlflow

    from train.tracking import get_experiment_id, setup_tracking, store
    from train.tracking.relocate import StoreMovedError

    setup_tracking()
    with mlflow.start_run(experiment_id=get_experiment_id("moving")) as run:
        mlflow.log_text("before the move", "note.txt")
    old_id = run.info.run_id
    copy = tmp_path / "elsewhere" / "mlruns"
    shutil.copytree(mlflow_store, copy)
    monkeypatch.setenv("STANCE_MLRUNS", str(copy))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # set by setup_tracking above; a new command starts without it
    store._CREATED.clear()
    with pytest.raises(StoreMovedError, match=r"stance runs relocate"):
        setup_tracking()
    # the command line says it in one line, exit 2, and writes nothing into the store
    r = subprocess.run(
        [sys.executable, "-m", "train.cli", "runs", "compare", "-e", "moving"], capture_output=True, text=True, cwd=tmp_path
    )
    assert r.returncode == 2 and f"was made in {mlflow_store}" in r.stderr and "Traceback" not in r.stderr, r.stderr
    result = CliRunner().invoke(app, ["runs", "relocate"])
    assert result.exit_code == 0, result.output
    assert list(copy.glob("mlflow.db.bak-*")), "no backup of the database"
    store._CREATED.clear()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup_tracking()
    assert mlflow.artifacts.load_text(f"runs:/{old_id}/note.txt") == "before the move"
    with mlflow.start_run(experiment_id=get_experiment_id("moving")) as run:
        mlflow.log_text("after", "note.txt")
    assert run.info.artifact_uri.startswith(copy.as_uri())  # new runs write into the new folder
    assert not (mlflow_store / "artifacts" / run.info.run_id).exists()
    assert CliRunner().invoke(app, ["runs", "relocate"]).exit_code == 1  # nothing left to do


def test_citation_cff_is_cff_1_2_and_names_this_version():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert {"message", "title", "authors", "version"} <= set(cff)
    assert cff["authors"] == [{"name": "stance-lab contributors"}]
    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert cff["version"] == version


@pytest.mark.slow  # a training run (the baseline: seconds) and a prediction through the CLI
def test_exported_model_moves_loads_and_predictions_name_its_run(tiny_corpus, tiny_model_dir, mlflow_store, tmp_path):
    import mlflow

    from train.config import load_config
    from train.pipeline import run_training
    from train.tracking.identity import data_digest

    cfg = load_config(None, tiny_overrides(tiny_corpus, tiny_model_dir, register_as="cite-me") + ["model.kind=baseline"])
    rid = run_training(cfg, quiet=True)
    runner = CliRunner()
    out = runner.invoke(app, ["models", "export", "models:/cite-me/1", str(tmp_path / "export")])
    assert out.exit_code == 0, out.output
    assert runner.invoke(app, ["models", "export", rid, str(tmp_path / "export")]).exit_code == 2  # not empty: refused
    moved = tmp_path / "somewhere-else" / "model"
    moved.parent.mkdir()
    shutil.move(tmp_path / "export", moved)
    card = (moved / "MODEL_CARD.md").read_text(encoding="utf-8")
    for section in (
        "## How to cite",
        "## Data",
        "## Metrics on the test split",
        "## Metrics on real text",
        "## Intended use",
        "## Limits",
    ):
        assert section in card
    run = mlflow.get_run(rid)
    assert f"{run.data.metrics['macro_f1']:.3f}" in card and data_digest(run) in card

    logged = pd.read_parquet(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="eval/scored.parquet"))
    src, dst = tmp_path / "rows.csv", tmp_path / "scored.csv"
    logged[["id", "text"]].to_csv(src, index=False)
    shutil.rmtree(mlflow_store)  # the copy needs no store
    out = runner.invoke(app, ["predict", "-m", str(moved), "-i", str(src), "-o", str(dst), "--no-detect-language"])
    assert out.exit_code == 0, out.output
    got = pd.read_csv(dst)
    assert np.abs(got[PROBS].to_numpy(float) - logged[PROBS].to_numpy(float)).max() <= 1e-5
    meta = json.loads((tmp_path / "scored.csv.meta.json").read_text(encoding="utf-8"))["model"]
    assert meta["run_id"] == rid and meta["training_data_digest"] == run.data.params["data.digest"]  # the rows used
    assert meta["training_commit"] == run.data.tags["git.commit"] and meta["exported_from"] == "models:/cite-me/1"
    assert meta["tool_version"] != "unknown" and rid in meta["model_id"]


@pytest.mark.slow  # a training run
def test_run_report_and_run_predictions_carry_the_identity(tiny_corpus, tiny_model_dir, mlflow_store, tmp_path):
    from train.config import load_config
    from train.pipeline import run_training

    rows = write_jsonl(tmp_path / "in.jsonl", [{"id": r["id"], "text": r["text"]} for r in make_rows(n_per_cell=1)])
    cfg = load_config(None, tiny_overrides(tiny_corpus, tiny_model_dir, register_as="null") + ["model.kind=baseline"])
    rid = run_training(cfg, quiet=True)
    report = CliRunner().invoke(app, ["runs", "report", rid])
    assert report.exit_code == 0 and "## How to cite this model" in report.output and f"run {rid}" in report.output
    out = CliRunner().invoke(app, ["predict", "-m", f"runs:/{rid}/model", "-i", str(rows), "-o", str(tmp_path / "o.parquet")])
    assert out.exit_code == 0, out.output
    meta = json.loads((tmp_path / "o.parquet.meta.json").read_text(encoding="utf-8"))["model"]
    assert meta["run_id"] == rid and meta["model_uri"] == f"runs:/{rid}/model"
