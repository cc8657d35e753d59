"""`stance models calibrate`: an existing model calibrated on a labeled sample and logged as a new run. The logged
temperature and biases are those fit_class_bias gives on the source model's own probabilities of the sample; the
logged model reloads to exactly adjust_proba(source probabilities, T, bias, the source's prior shift); the logged
metrics are sklearn's on the reloaded model's predictions; the source stays as it was; the run verifies. Bad samples
are refused (exit 2) before any run exists."""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score
from typer.testing import CliRunner

from tests.conftest import PHRASES, make_rows, tiny_overrides, write_jsonl
from train.cli import app
from train.config import load_config
from train.schema import LABELS

PRIOR = [0.2, 0.5, 0.3]


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def shifted_rows(prefix: str, n_per_cell: int, seed: int) -> list[dict]:
    """Real-looking rows the corpus-trained model gets wrong one way: a third of the hostile rows read like neutral
    statements (the model calls them neutral), so a class bias toward hostile has something to correct."""
    rows = []
    for i, r in enumerate(make_rows(n_per_cell=n_per_cell, seed=seed)):
        r = dict(r, id=f"{prefix}-{r['id']}", source="imported")
        if r["stance"] == "hostile" and i % 3 == 0:
            r["text"] = f"{PHRASES[r['language']]['neutral'][i % 3]} !{i}"
        rows.append(r)
    return rows


def texts_labels(rows):
    return [r["text"] for r in rows], np.array([LABELS.index(r["stance"]) for r in rows])


def load(uri: str):
    """The model behind a URI as `stance predict` loads it (in a folder that outlives the call)."""
    from train.tracking.registry import load_for_predict

    return load_for_predict(uri, Path(tempfile.mkdtemp(prefix="calib-test-")), "cpu")[0]


def card_bytes(uri: str) -> bytes:
    from train.tracking.registry import resolve_model

    model_dir, _, _ = resolve_model(uri, Path(tempfile.mkdtemp(prefix="calib-card-")))
    return (model_dir / "stance_model.json").read_bytes()


@pytest.fixture
def source_run(tiny_corpus, tiny_model_dir, mlflow_store):
    """A tiny baseline run, temperature-calibrated on its validation split, with a class prior (kept by calibration),
    registered as test-model version 1."""
    from train.pipeline import run_training

    cfg = load_config(
        None,
        tiny_overrides(tiny_corpus, tiny_model_dir)
        + ["model.kind=baseline", "train.calibrate=true", f"model.class_prior=[{','.join(map(str, PRIOR))}]"],
    )
    return run_training(cfg, quiet=True)


@pytest.mark.slow  # a training run and a calibration run
def test_calibrate_logs_a_new_verified_run_with_the_fitted_calibration(source_run, tmp_path):
    import mlflow
    from mlflow.tracking import MlflowClient

    from train.models import adjust_proba, fit_class_bias

    calib_rows = shifted_rows("cal", 3, seed=9)
    real_rows = shifted_rows("real", 4, seed=7)
    calib = write_jsonl(tmp_path / "calib.jsonl", calib_rows)
    real = write_jsonl(tmp_path / "real.jsonl", real_rows)
    source = load("models:/test-model/1")
    card_before = card_bytes("models:/test-model/1")
    assert source.temperature != 1.0 and source.class_bias is None and source.class_prior == PRIOR

    result = cli(
        "models",
        "calibrate",
        "--model",
        "models:/test-model/1",
        "--on",
        calib,
        "--eval-file",
        real,
        "--register-as",
        "test-model-cal",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output

    client = MlflowClient()
    runs = client.search_runs([client.get_run(source_run).info.experiment_id], "tags.`stance.calibrated_from` != ''")
    assert len(runs) == 1, "the calibrated model is a new run in the source run's experiment"
    run = runs[0]
    rid, m, tags, params = run.info.run_id, run.data.metrics, run.data.tags, run.data.params
    assert rid != source_run and run.info.status == "FINISHED"
    assert tags["stance.calibrated_from"] == "models:/test-model/1"
    assert tags["stance.calibrated_from_version"] == "1" and tags["stance.calibrated_from_run"] == source_run
    assert tags["stance.verified"] == "passed" and tags["model_kind"] == "baseline"
    assert params["train.calibration_method"] == "class_bias" and params["data.calibration_file"] == str(calib)
    assert params["data.calibration_sha256"] == hashlib.sha256(calib.read_bytes()).hexdigest()
    assert params["n_calibration"] == str(len(calib_rows))

    # the temperature and biases: fit_class_bias on the source model's own probabilities of the calibration rows
    texts, y = texts_labels(calib_rows)
    want_t, want_b = fit_class_bias(source._raw_proba(texts), y)
    assert m["temperature"] == pytest.approx(want_t, rel=1e-6)
    for label, b in zip(LABELS, want_b):
        assert m[f"class_bias/{label}"] == pytest.approx(float(b), abs=1e-6)
    assert abs(want_b[2]) > 0.05, "the sample's hostile rows read as neutral: a bias must be fitted"

    # the logged model: the source's probabilities with the new calibration and the source's prior shift, nothing else
    calibrated = load(f"runs:/{rid}/model")
    assert calibrated.class_prior == PRIOR and calibrated.train_prior == source.train_prior
    rtexts, ry = texts_labels(real_rows)
    got = calibrated.predict_proba(rtexts)
    want = adjust_proba(source._raw_proba(rtexts), want_t, source.class_prior, source.train_prior, bias=want_b)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, source.predict_proba(rtexts), atol=1e-3), "calibration changed nothing"

    # the eval file's metrics: sklearn's on the reloaded calibrated model's predictions; before = the source model
    after = f1_score(ry, got.argmax(1), average="macro", labels=[0, 1, 2], zero_division=0)
    before = f1_score(ry, source.predict_proba(rtexts).argmax(1), average="macro", labels=[0, 1, 2], zero_division=0)
    assert m["real/macro_f1"] == pytest.approx(after, abs=1e-9)
    assert f"{before:.3f} -> {after:.3f}" in result.output, result.output
    # the source run's test split is re-scored (same rows, the calibrated model) and the sample in-sample
    assert {"macro_f1", "calibration/macro_f1", "real/ece"} <= set(m)
    assert tags["stance.eval_sets"] == "eval,real,calibration"
    assert rid in result.output and f"runs:/{rid}/model" in result.output and "models:/test-model/1" in result.output

    # the source is unchanged: same card (temperature, no bias), same registry version
    assert card_bytes("models:/test-model/1") == card_before
    assert client.get_model_version("test-model", "1").run_id == source_run
    assert client.get_model_version("test-model-cal", "1").run_id == rid

    verified = cli("runs", "verify", rid)
    assert verified.exit_code == 0 and "real: max |prob diff|" in verified.output, verified.output
    assert "calibration: argmax agreement" in verified.output and "PASSED" in verified.output
    summary = json.loads(
        Path(mlflow.artifacts.download_artifacts(run_id=rid, artifact_path="calibration_summary.json")).read_text()
    )
    assert summary["rows_per_label"] == {l: sum(r["stance"] == l for r in calib_rows) for l in LABELS}


@pytest.mark.slow  # a training run and a calibration run
def test_bad_samples_are_refused_before_any_run(source_run, tmp_path):
    from mlflow.tracking import MlflowClient

    real_rows = shifted_rows("real", 2, seed=7)
    real = write_jsonl(tmp_path / "real.jsonl", real_rows)
    overlap = write_jsonl(tmp_path / "overlap.jsonl", shifted_rows("cal", 2, seed=9) + real_rows[:2])
    no_hostile = write_jsonl(tmp_path / "no_hostile.jsonl", [r for r in shifted_rows("cal", 2, 9) if r["stance"] != "hostile"])
    test_rows = [r for r in make_rows() if r["split"] == "test"][:3]  # the source run's test split
    leaked = write_jsonl(tmp_path / "leaked.jsonl", shifted_rows("cal", 2, seed=9) + test_rows)
    broken = write_jsonl(
        tmp_path / "broken.jsonl",
        [dict(r, stance="angry") if i == 4 else r for i, r in enumerate(shifted_rows("cal", 2, seed=9))],
    )
    exp_id = MlflowClient().get_run(source_run).info.experiment_id
    cases = [
        (overlap, ["--eval-file", real], "overlap.jsonl: field 'id': 2 rows are also real rows"),
        (no_hostile, [], "no_hostile.jsonl: field 'stance': no hostile rows"),
        (leaked, [], "leaked.jsonl: field 'id': 3 rows are also the source run's eval rows"),
        (broken, [], "broken.jsonl:5"),
        (tmp_path / "missing.jsonl", [], "missing.jsonl: no such file"),
    ]
    for path, extra, message in cases:
        result = cli("models", "calibrate", "--model", f"runs:/{source_run}/model", "--on", path, *extra)
        assert result.exit_code == 2 and message in result.output, (path, result.output)
        assert "Traceback" not in result.output
    assert len(MlflowClient().search_runs([exp_id])) == 1, "a refused sample opens no run"
    # the temperature method fits no per-class bias: a sample without hostile rows is fine for it
    ok = cli("models", "calibrate", "--model", source_run, "--on", no_hostile, "--method", "temperature")
    assert ok.exit_code == 0, ok.output
    run = MlflowClient().search_runs([exp_id], "tags.`stance.calibrated_from` != ''")[0]
    assert "class_bias/hostile" not in run.data.metrics and run.data.tags["stance.eval_sets"] == "eval,calibration"
    assert run.data.params["train.calibration_method"] == "temperature"


def test_calibrate_a_transformer_model_directory(tiny_model_dir, mlflow_store, tmp_path):
    """A plain saved transformer folder (no run behind it): the run goes to stance-calibrations, named after the
    folder, and the logged model reloads to the source's probabilities with the fitted calibration."""
    from mlflow.tracking import MlflowClient

    from train.models import TransformerStance, adjust_proba, fit_class_bias, load_stance_model

    src = TransformerStance(str(tiny_model_dir), max_length=16).build().save(tmp_path / "tiny")
    calib_rows = shifted_rows("cal", 2, seed=9)
    calib = write_jsonl(tmp_path / "calib.jsonl", calib_rows)
    result = cli("models", "calibrate", "--model", src, "--on", calib, "--device", "cpu", "--batch-size", "8")
    assert result.exit_code == 0, result.output
    client = MlflowClient()
    exp = client.get_experiment_by_name("stance-calibrations")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.run_name == "tiny-cal-class_bias" and run.data.tags["stance.verified"] == "passed"
    assert run.data.tags["stance.calibrated_from"] == str(src.resolve()) and "stance.calibrated_from_run" not in run.data.tags

    source = load_stance_model(src, device="cpu")
    texts, y = texts_labels(calib_rows)
    raw = source._raw_proba(texts, 8)
    t, b = fit_class_bias(raw, y)
    assert run.data.metrics["temperature"] == pytest.approx(t, rel=1e-5)
    calibrated = load(f"runs:/{run.info.run_id}/model")
    np.testing.assert_allclose(calibrated.predict_proba(texts, 8), adjust_proba(raw, t, bias=b), atol=1e-5)
    assert calibrated.temperature != 1.0 and load_stance_model(src, device="cpu").temperature == 1.0
