"""Issue 15, items 4 and 5 (training): a run logs only the settings that shaped it, warns on the others, records the
digest of the rows it used, and prints a short readable summary instead of raw metric dicts and library warnings."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, make_rows, tiny_overrides, tracking_client, write_jsonl
from train.config import ineffective_settings, ineffective_warning, load_config, run_params
from train.naming import data_digest

TRANSFORMER_ONLY = ("train.lr", "train.epochs", "model.name", "model.pooling", "train.max_length", "train.batch_size")
BASELINE_ONLY = ("model.C", "model.ngram_min", "model.ngram_max", "model.analyzer", "model.max_features")


def test_params_are_the_model_kinds_own_settings():
    base = run_params(load_config(REPO / "configs/baseline.yaml"))
    assert not set(TRANSFORMER_ONLY) & set(base) and set(BASELINE_ONLY) <= set(base)
    assert {"train.seed", "train.class_weighting", "data.paths", "model.kind"} <= set(base)
    trans = run_params(load_config(REPO / "configs/default.yaml"))
    assert not set(BASELINE_ONLY) & set(trans) and set(TRANSFORMER_ONLY) <= set(trans)


def test_settings_without_effect_are_named_with_the_ones_that_have_one():
    assert ineffective_warning(load_config(REPO / "configs/baseline.yaml")) is None
    assert ineffective_warning(load_config(REPO / "configs/default.yaml")) is None
    cfg = load_config(REPO / "configs/baseline.yaml", ["train.lr=3e-5", "model.pooling=cls"])
    assert ineffective_settings(cfg) == ["model.pooling", "train.lr"]
    line = ineffective_warning(cfg)
    assert line.startswith("warning: model.pooling, train.lr have no effect on a baseline run (model.kind: baseline)")
    assert "settings that do: model.analyzer, model.ngram_min, model.ngram_max, model.max_features, model.C" in line
    assert ineffective_settings(load_config(REPO / "configs/default.yaml", ["model.C=2"])) == ["model.C"]


def _parts(rows):
    df = pd.DataFrame(rows)
    return {name: df[df["split"] == s] for name, s in (("train", "train"), ("val", "val"), ("eval", "test"))}


def test_data_digest_follows_the_rows_not_their_order():
    rows = make_rows()
    digest = data_digest(_parts(rows))
    assert data_digest(_parts(rows[::-1])) == digest  # same rows, another file order
    edited = [dict(r) for r in rows]
    edited[5]["text"] += " (edited)"
    assert data_digest(_parts(edited)) != digest
    relabeled = [dict(r) for r in rows]
    relabeled[7]["stance"] = "neutral" if rows[7]["stance"] != "neutral" else "hostile"
    assert data_digest(_parts(relabeled)) != digest
    assert data_digest(_parts(rows[:-1])) != digest  # a row fewer


def train_cli(*args):
    from train.cli import app

    return CliRunner().invoke(app, ["train", str(REPO / "configs/default.yaml"), *args])


def test_baseline_run_records_only_its_settings_and_warns_once(tiny_corpus, tiny_model_dir, mlflow_store):
    from train.reports.run_report import run_report

    result = train_cli(*tiny_overrides(tiny_corpus, tiny_model_dir, **{"model.kind": "baseline", "train.lr": "3e-5"}))
    assert result.exit_code == 0, result.output
    (warning,) = [l for l in result.output.splitlines() if "no effect" in l]  # said once
    # the tiny overrides also set the encoder, its prefix, batch size and max length: none applies either
    assert warning.startswith("warning: model.name, model.text_prefix, train.lr, train.batch_size, train.max_length have")
    assert "have no effect on a baseline run (model.kind: baseline)" in warning
    (run,) = tracking_client().search_runs([tracking_client().get_experiment_by_name("test-exp").experiment_id])
    p, t = run.data.params, run.data.tags
    assert not set(TRANSFORMER_ONLY) & set(p), sorted(p)
    assert p["model.C"] == "4.0" and p["model.ngram_max"] == "5"
    assert t["stance.ignored_settings"] == warning.removeprefix("warning: ")
    assert p["data.digest"] == t["data.digest"] and len(p["data.digest"]) == 12
    setup = run_report(run.info.run_id).split("## Metrics")[0]
    assert "| model.C " in setup and "| model.ngram_max " in setup and "| data.digest " in setup
    assert "train.lr" not in setup and "model.name" not in setup and "max_length" not in setup


def test_transformer_run_prints_a_short_summary(tiny_corpus, tiny_model_dir, mlflow_store):
    result = train_cli(*tiny_overrides(tiny_corpus, tiny_model_dir))
    assert result.exit_code == 0, result.output
    out = result.output
    (run,) = tracking_client().search_runs([tracking_client().get_experiment_by_name("test-exp").experiment_id])
    p = run.data.params
    assert not set(BASELINE_ONLY) & set(p) and p["train.lr"] == "0.001"
    # rows per split and per file, with the digest that is logged
    assert f"data {p['data.digest']}: train {p['n_train']}, val {p['n_val']}, test {p['n_eval']} rows" in out
    assert "labeled/statements.jsonl" in out
    # one table row per epoch, not the Trainer's raw dicts
    assert "epoch  train_loss  val_loss  val_macro_f1" in out
    epoch_rows = [l.split() for l in out.splitlines() if l.strip()[:1].isdigit() and len(l.split()) == 6]
    assert [r[0] for r in epoch_rows] == ["1", "2"]
    assert "{'loss'" not in out and "'eval_loss'" not in out and "train_runtime" not in out
    # final metrics with their interval, and nothing from the libraries' known-harmless warnings
    lo, hi = run.data.metrics["macro_f1_ci_low"], run.data.metrics["macro_f1_ci_high"]
    assert f"{run.data.metrics['macro_f1']:.4f}  {lo:.3f}-{hi:.3f}" in out
    assert "UserWarning" not in out and "Creating initial MLflow database" not in out
    assert len([l for l in out.splitlines() if l.strip()]) <= 12, out


def test_two_runs_on_different_data_are_told_apart(tmp_path, tiny_model_dir, mlflow_store):
    from train.reports.leaderboard import format_leaderboard, leaderboard, load_runs

    rows = make_rows()
    corpus = tmp_path / "labeled"
    over = tiny_overrides(corpus, tiny_model_dir, **{"model.kind": "baseline", "register_as": "null"})
    for edit in ("", " again"):  # the same config re-trained after one text of the corpus changed
        rows[3] = {**rows[3], "text": rows[3]["text"] + edit}
        write_jsonl(corpus / "s.jsonl", rows)
        assert train_cli(*over).exit_code == 0
    runs = load_runs(["test-exp"])
    digests = set(runs["params.data.digest"])
    assert len(digests) == 2
    shown = format_leaderboard(leaderboard(runs))
    assert all(d in shown for d in digests), shown


@pytest.mark.slow  # an interrupted run and a refused resume
def test_resume_on_changed_data_is_refused(tmp_path, tiny_model_dir, mlflow_store, monkeypatch):
    from tests.test_training import interrupt_after_first_epoch
    from train.pipeline import ResumeError, run_training

    rows = make_rows()
    corpus = tmp_path / "labeled"
    write_jsonl(corpus / "s.jsonl", rows)
    interrupt_after_first_epoch(monkeypatch)
    cfg = load_config(None, tiny_overrides(corpus, tiny_model_dir, **{"train.epochs": 3, "train.early_stopping_patience": 0}))
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, quiet=True)
    rows[0] = {**rows[0], "text": rows[0]["text"] + " edited"}
    write_jsonl(corpus / "s.jsonl", rows)
    with pytest.raises(ResumeError, match=r"the data changed since run \w+ was interrupted \(data digest \w{12} -> \w{12}\)"):
        run_training(cfg, resume=True, quiet=True)
