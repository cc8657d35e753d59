"""Issue 12, item 6: `stance runs compare` counts distinct seeds; a seed trained again counts once, with its latest run."""

from __future__ import annotations

import time

import pytest

from train.reports.leaderboard import format_leaderboard, leaderboard, load_runs


def log_run(name, seed, f1):
    import mlflow

    with mlflow.start_run(run_name=name) as run:
        mlflow.log_params({"model.kind": "baseline", "train.seed": str(seed)})
        mlflow.log_metrics({"macro_f1": f1, "train_seconds": 1.0})
    time.sleep(0.01)  # distinct start times: "latest" must be well defined
    return run.info.run_id


def test_repeated_runs_of_one_seed_count_once_latest_wins(mlflow_store):
    import mlflow

    from train.tracking import setup_tracking

    setup_tracking()
    mlflow.set_experiment("rep")
    seven = [log_run("tfidf-s7", 7, f) for f in (0.80, 0.81, 0.83)]
    eight = log_run("tfidf-s8", 8, 0.85)
    only7 = [log_run("other-s7", 7, 0.83) for _ in range(3)]
    board = leaderboard(load_runs(["rep"])).set_index("config")

    tfidf = board.loc["tfidf"]
    assert tfidf["n_seeds"] == 2 and tfidf["n_runs"] == 4
    assert tfidf["macro_f1_mean"] == pytest.approx((0.83 + 0.85) / 2)  # the latest run of seed 7, not the mean of all
    assert set(tfidf["run_ids"].split(",")) == {seven[-1], eight}

    other = board.loc["other"]
    assert other["n_seeds"] == 1 and other["n_runs"] == 3 and other["run_ids"] == only7[-1]
    text = format_leaderboard(leaderboard(load_runs(["rep"])), fmt="table")
    assert "± 0.000" not in text  # one seed has no spread to report
    assert "1 (3 runs)" in text and "2 (4 runs)" in text and "only its latest run counts" in text
