"""Leaderboard and run report: grouping seeds into configurations, mean ± std, sorting, parent runs left out,
formats, errors; on hand-made runs (exact numbers) and on the demo store's real runs."""

from __future__ import annotations

import csv
import io
import math
import statistics

import pytest
from typer.testing import CliRunner

from tests.make_demo_store import demo_store, use_demo_store  # noqa: F401 - fixtures
from train.reports.leaderboard import CompareError, format_leaderboard, leaderboard, load_runs
from train.reports.run_report import run_report


def log_run(name, metrics, params=None, tags=None, status="FINISHED"):
    import mlflow

    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params({"model.kind": "transformer", "train.lr": "0.001", **(params or {})})
        mlflow.log_metrics(metrics)
        mlflow.set_tags(tags or {})
    if status != "FINISHED":
        from mlflow.tracking import MlflowClient

        MlflowClient().set_terminated(run.info.run_id, status)
    return run.info.run_id


@pytest.fixture(scope="module")
def _made_store(tmp_path_factory):
    """Two seeds of config A, one of config B, a failed run, a sweep parent, and a same-named run with other params.

    One store for the module: a new sqlite store costs seconds of migrations, and these tests only read it.
    """
    import mlflow

    from train.tracking import setup_tracking

    root = tmp_path_factory.mktemp("cmp-store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STANCE_MLRUNS", str(root / "mlruns"))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.chdir(root)
        setup_tracking()
        mlflow.set_experiment("cmp")
        ids = _log_made_runs()
    return root / "mlruns", ids


@pytest.fixture
def made_runs(_made_store, monkeypatch):
    from train.tracking import setup_tracking

    store, ids = _made_store
    monkeypatch.setenv("STANCE_MLRUNS", str(store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    setup_tracking()
    return ids


def _log_made_runs():
    a = [
        log_run(
            f"e5-mean-lr0.001-s{s}",
            {"macro_f1": f, "macro_f1_lang_ru": f - 0.1, "train_seconds": 10.0},
            {"train.seed": str(s)},
            {"model_family": "e5"},
        )
        for s, f in ((1, 0.60), (2, 0.70))
    ]
    b = log_run(
        "tfidf-s42",
        {"macro_f1": 0.55, "macro_f1_lang_ru": 0.5, "train_seconds": 1.0},
        {"model.kind": "baseline"},
        {"model_family": "tfidf-logreg"},
    )
    log_run("crashed-s1", {"macro_f1": 0.99}, status="FAILED")
    log_run("e5-mean-lr0.001", {"macro_f1": 0.65}, tags={"stance.parent": "true"})
    c = log_run("e5-mean-lr0.001-s3", {"macro_f1": 0.10, "train_seconds": 5.0}, {"train.lr": "0.1", "train.seed": "3"})
    return {"a": a, "b": b, "c": c}


def test_leaderboard_groups_seeds_and_sorts(made_runs):
    board = leaderboard(load_runs(["cmp"]))
    assert board["n_seeds"].tolist() == [2, 1, 1]
    top = board.iloc[0]
    assert top["config"].startswith("e5-mean-lr0.001#") and top["model_family"] == "e5"
    assert top["macro_f1_mean"] == pytest.approx(0.65)
    assert top["macro_f1_std"] == pytest.approx(statistics.stdev([0.60, 0.70]))
    assert top["macro_f1_lang_ru"] == pytest.approx(0.55)
    assert set(top["run_ids"].split(",")) == set(made_runs["a"])
    assert board.iloc[1]["config"] == "tfidf" and math.isnan(board.iloc[1]["macro_f1_std"])
    # same name, other learning rate: another configuration, told apart by a params digest
    assert board.iloc[2]["run_ids"] == made_runs["c"] and board.iloc[2]["config"] != top["config"]
    assert 0.99 not in board["macro_f1_mean"].tolist(), "failed runs must not be ranked"


def test_parents_only_on_request_and_lower_is_better(made_runs):
    with_parents = leaderboard(load_runs(["cmp"], include_parents=True))
    assert with_parents["n_seeds"].sum() == 5
    board = leaderboard(load_runs(["cmp"]), metric="train_seconds")
    assert board["train_seconds_mean"].tolist() == sorted(board["train_seconds_mean"].tolist())


def test_formats(made_runs):
    board = leaderboard(load_runs(["cmp"]))
    md = format_leaderboard(board, fmt="markdown").splitlines()
    assert md[0].startswith("| config | model | seeds | macro_f1 | ru |") and md[1].startswith("|---|")
    assert "0.650 ± 0.071" in md[2]
    rows = list(csv.DictReader(io.StringIO(format_leaderboard(board, fmt="csv"))))
    assert float(rows[0]["macro_f1_mean"]) == pytest.approx(0.65) and rows[0]["n_seeds"] == "2"
    assert "0.650 ± 0.071" in format_leaderboard(board, fmt="table")


def test_bad_experiment_and_metric_are_named(made_runs):
    with pytest.raises(CompareError, match="no experiment named 'nope'.*cmp"):
        load_runs(["nope"])
    with pytest.raises(CompareError, match="no run has a metric 'f2'.*macro_f1"):
        leaderboard(load_runs(["cmp"]), metric="f2")


def test_cli_compare_writes_file(made_runs, tmp_path):
    from train.cli import app

    out = tmp_path / "board.md"
    r = CliRunner().invoke(app, ["runs", "compare", "--experiment", "cmp", "--format", "markdown", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert "| tfidf | tfidf-logreg | 1 | 0.550 |" in out.read_text()
    r = CliRunner().invoke(app, ["runs", "compare", "--experiment", "cmp", "--metric", "nonexistent"])
    assert r.exit_code == 1 and "nonexistent" in r.output
    r = CliRunner().invoke(app, ["runs", "compare", "--experiment", "cmp", "--format", "xml"])
    assert r.exit_code == 2 and "xml" in r.output


# -- on the demo store's real runs ------------------------------------------------------------------------------------


@pytest.mark.slow  # the demo store: several real runs
def test_leaderboard_on_real_runs(use_demo_store):
    from mlflow.tracking import MlflowClient

    demo = use_demo_store
    board = leaderboard(load_runs([demo.experiment]))
    assert len(board) == 2
    by_family = board.set_index("model_family")
    tiny = by_family.loc["tiny-bert"]
    assert tiny["n_seeds"] == 2 and set(tiny["run_ids"].split(",")) == set(demo.transformer_run_ids)
    f1s = [MlflowClient().get_run(r).data.metrics["macro_f1"] for r in demo.transformer_run_ids]
    assert tiny["macro_f1_mean"] == pytest.approx(statistics.mean(f1s))
    assert {"macro_f1_lang_en", "macro_f1_lang_ru", "macro_f1_lang_tr"} <= set(board.columns)
    assert by_family.loc["tfidf-logreg", "run_ids"] == demo.baseline_run_id
    assert board["macro_f1_mean"].is_monotonic_decreasing


@pytest.mark.slow  # the demo store: several real runs
def test_report_of_real_run(use_demo_store, tmp_path):
    from mlflow.tracking import MlflowClient

    from train.cli import app

    rid = use_demo_store.transformer_run_ids[0]
    run = MlflowClient().get_run(rid)
    text = run_report(rid, top_errors=3)
    assert text.startswith(f"# Run report: {run.info.run_name}")
    assert f"| macro_f1 | {run.data.metrics['macro_f1']:.3f} |" in text
    assert "95% bootstrap CI" in text and "| ece |" in text
    for section in ("## Per language", "## Per class", "## Artifacts", "## Most confident mistakes"):
        assert section in text
    assert "| ru |" in text and "| hostile |" in text and "eval/confusion_matrix.png" in text
    mistakes = text.split("## Most confident mistakes")[1].splitlines()
    conf = [float(line.split("|")[5]) for line in mistakes if line.startswith("| ") and not line.startswith("| id")]
    assert 0 < len(conf) <= 3 and conf == sorted(conf, reverse=True)

    out = tmp_path / "r.md"
    r = CliRunner().invoke(app, ["runs", "report", rid, "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text(encoding="utf-8").startswith("# Run report:")
    r = CliRunner().invoke(app, ["runs", "report", "0" * 32])
    assert r.exit_code == 1 and "no run" in r.output
