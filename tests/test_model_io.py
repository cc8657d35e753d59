"""Save -> load round trips give the probabilities of the model that was saved, for the baseline and for every pooling,
and a saved directory that was altered (labels reordered, unknown pooling, changed or missing files) is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.conftest import make_rows
from train.models import MODEL_CARD, BaselineStance, ModelFileError, TransformerStance, load_stance_model

ROWS = make_rows()
TEXTS = [r["text"] for r in ROWS]
LABELS_ = [r["stance"] for r in ROWS]
PROBE = TEXTS[::7] + ["we hope for dialogue", "strike them hard now", "unknown words only xyz"]


@pytest.fixture(scope="module")
def fitted_baseline():
    return BaselineStance().fit(TEXTS, LABELS_)


def test_baseline_round_trip_is_exact(fitted_baseline, tmp_path):
    # The case that broke: LogisticRegression stores coef_ Fortran-ordered, and safetensors.numpy 0.8 wrote such
    # arrays' memory as if C-ordered (issue #825), so the reloaded model multiplied by a scrambled matrix.
    assert fitted_baseline.pipeline[-1].coef_.flags.f_contiguous and not fitted_baseline.pipeline[-1].coef_.flags.c_contiguous
    before = fitted_baseline.predict_proba(PROBE)
    loaded = load_stance_model(fitted_baseline.save(tmp_path / "b"))
    assert isinstance(loaded, BaselineStance)
    np.testing.assert_array_equal(loaded.predict_proba(PROBE), before)
    np.testing.assert_array_equal(loaded.pipeline[-1].coef_, fitted_baseline.pipeline[-1].coef_)


def test_baseline_refuses_the_old_safetensors_format(fitted_baseline, tmp_path):
    path = fitted_baseline.save(tmp_path / "b")
    (path / BaselineStance.FILE).rename(path / "baseline.safetensors")
    card = json.loads((path / MODEL_CARD).read_text())
    card.pop("files")
    (path / MODEL_CARD).write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="older version.*retrain"):
        load_stance_model(path)


@pytest.mark.parametrize("pooling", ["mean", "cls", "auto"])
def test_transformer_round_trip_is_exact(pooling, tiny_model_dir, tmp_path):
    import torch

    torch.manual_seed(1)
    model = TransformerStance(str(tiny_model_dir), pooling=pooling, max_length=16).build()
    with torch.no_grad():  # a head that is not all-zero/near-uniform, so a wrong reload would show
        for p in model.module.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    before = model.to("cpu", "fp32").predict_proba(PROBE)
    assert np.abs(before - 1 / 3).max() > 0.05
    loaded = load_stance_model(model.save(tmp_path / "m"), device="cpu", precision="fp32")
    assert loaded.pooling == pooling
    np.testing.assert_allclose(loaded.predict_proba(PROBE), before, atol=1e-6, rtol=0)


def _edit_card(path, **changes):
    card = json.loads((path / MODEL_CARD).read_text())
    card.update(changes)
    (path / MODEL_CARD).write_text(json.dumps(card))


def test_altered_directories_are_refused(fitted_baseline, tiny_model_dir, tmp_path):
    base = fitted_baseline.save(tmp_path / "base")
    cases = {}
    for name, edit in {
        "labels": lambda p: _edit_card(p, labels=["hostile", "neutral", "conciliatory"]),
        "kind": lambda p: _edit_card(p, kind="svm"),
        "changed": lambda p: (p / BaselineStance.FILE).write_bytes((p / BaselineStance.FILE).read_bytes()[:-10] + b"0" * 10),
        "missing": lambda p: (p / BaselineStance.FILE).unlink(),
    }.items():
        path = tmp_path / name
        shutil.copytree(base, path)
        edit(path)
        with pytest.raises(ModelFileError) as e:
            load_stance_model(path)
        cases[name] = str(e.value)
    assert "must be ['conciliatory', 'neutral', 'hostile'] in this order" in cases["labels"]
    assert "'svm' is not one of" in cases["kind"]
    assert "changed since saved: baseline.skops" in cases["changed"]
    assert "missing baseline.skops" in cases["missing"]

    tdir = TransformerStance(str(tiny_model_dir), max_length=16).build().save(tmp_path / "t")
    _edit_card(tdir, pooling="maen")
    with pytest.raises(ModelFileError, match="pooling 'maen' is not one of mean, cls, auto"):
        load_stance_model(tdir)
    with pytest.raises(ValueError, match="pooling 'maen'"):
        TransformerStance(str(tiny_model_dir), pooling="maen")


def test_mlmodel_artifact_path_cannot_leave_the_model_directory(fitted_baseline, tmp_path):
    import yaml

    from train.inference import InferenceError
    from train.tracking.registry import stance_dir_in

    outside = fitted_baseline.save(tmp_path / "outside")
    for rel in ("../outside", str(outside)):
        mdir = tmp_path / "mlmodel"
        shutil.rmtree(mdir, ignore_errors=True)
        mdir.mkdir()
        (mdir / "MLmodel").write_text(
            yaml.safe_dump({"flavors": {"python_function": {"artifacts": {"stance_model": {"path": rel}}}}})
        )
        with pytest.raises(InferenceError, match="leads outside the model directory"):
            stance_dir_in(mdir)


# -- calibration and prior shift (stored in the card, applied by every serving path) -----------------------------------


def test_temperature_is_recovered_and_identity_is_exact():
    from train.models import adjust_proba, fit_temperature

    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, size=(20000, 3))
    sharp = np.exp(z) / np.exp(z).sum(1, keepdims=True)  # what an overconfident model says
    true = np.exp(z / 2.5) / np.exp(z / 2.5).sum(1, keepdims=True)  # how often it is right
    y = np.array([rng.choice(3, p=p) for p in true])
    assert fit_temperature(sharp, y) == pytest.approx(2.5, rel=0.06)
    assert adjust_proba(sharp, 1.0, None) is sharp  # untouched, bit for bit, when nothing is set


def test_prior_shift_follows_bayes_rule():
    from train.models import adjust_proba

    flat = np.full((2, 3), 1 / 3, dtype=np.float32)
    np.testing.assert_allclose(adjust_proba(flat, 1.0, [0.2, 0.6, 0.2], [1 / 3] * 3), [[0.2, 0.6, 0.2]] * 2, atol=1e-6)
    p = np.array([[0.5, 0.3, 0.2]])
    got = adjust_proba(p, 1.0, [0.25, 0.5, 0.25], [0.5, 0.25, 0.25])  # trained on twice as many conciliatory rows
    want = p * np.array([0.5, 2.0, 1.0])
    np.testing.assert_allclose(got, want / want.sum(), atol=1e-6)


def test_calibrated_and_prior_shifted_baseline_round_trips(tmp_path):
    model = BaselineStance(class_prior=[0.15, 0.7, 0.15]).fit(TEXTS, LABELS_)
    t = model.calibrate(TEXTS[::3], LABELS_[::3])
    assert t != 1.0 and model.train_prior == pytest.approx([1 / 3] * 3)
    from train.models import adjust_proba

    raw = model._raw_proba(PROBE)
    got = model.predict_proba(PROBE)
    scaled = adjust_proba(raw, t)  # temperature only
    assert not np.allclose(scaled, raw) and not np.allclose(got, scaled)  # both adjustments are applied ...
    assert (got[:, 1] >= scaled[:, 1]).all() and (got[:, 1] > scaled[:, 1]).mean() > 0.5  # ... the neutral prior raised neutral
    loaded = load_stance_model(model.save(tmp_path / "b"))
    assert loaded.temperature == t and loaded.class_prior == [0.15, 0.7, 0.15]
    np.testing.assert_array_equal(loaded.predict_proba(PROBE), got)
    _edit_card(tmp_path / "b", temperature=-1)
    with pytest.raises(ModelFileError, match="temperature"):
        load_stance_model(tmp_path / "b")


def test_class_biases_are_recovered_whatever_the_label_mix():
    """A model that under-calls hostility (its hostile logit sits 1.2 too low, neutral's 0.6 too high): the fitted
    biases undo that, and a sample that is mostly neutral gives the same biases (balanced likelihood), where an
    unweighted fit would take the mix for a confusion."""
    from train.models import fit_class_bias

    rng = np.random.default_rng(1)
    z = rng.normal(0, 2.5, size=(30000, 3))
    true = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    y = (rng.random(len(z))[:, None] > true.cumsum(1)).sum(1)
    biased = np.exp(z + [0.0, 0.6, -1.2])
    model_says = biased / biased.sum(1, keepdims=True)
    t, b = fit_class_bias(model_says, y)
    assert t == pytest.approx(1.0, abs=0.05) and b[0] == 0.0
    np.testing.assert_allclose(b[1:], [-0.6, 1.2], atol=0.08)
    keep = np.flatnonzero((y == 1) | (rng.random(len(y)) < 0.25))  # ~70% neutral, as real collections are
    assert 0.6 < (y[keep] == 1).mean() < 0.8
    np.testing.assert_allclose(fit_class_bias(model_says[keep], y[keep])[1][1:], [-0.6, 1.2], atol=0.12)


def test_class_bias_calibration_round_trips_and_is_checked(tmp_path):
    model = BaselineStance().fit(TEXTS, LABELS_)
    raw = model._raw_proba(PROBE)
    t = model.calibrate(TEXTS[::3], LABELS_[::3], method="class_bias")
    assert model.temperature == t and len(model.class_bias) == 3 and model.class_bias[0] == 0.0
    got = model.predict_proba(PROBE)
    from train.models import adjust_proba

    np.testing.assert_allclose(got, adjust_proba(raw, t, bias=model.class_bias), atol=1e-7)
    assert not np.allclose(got, adjust_proba(raw, t), atol=1e-4)  # the biases are applied, not only the temperature
    loaded = load_stance_model(model.save(tmp_path / "b"))
    assert loaded.class_bias == model.class_bias
    np.testing.assert_array_equal(loaded.predict_proba(PROBE), got)
    model.calibrate(TEXTS[::3], LABELS_[::3])  # back to a temperature alone: the biases go
    assert model.class_bias is None
    with pytest.raises(ValueError, match="class_bias"):
        model.calibrate(TEXTS[::3], LABELS_[::3], method="platt")
    _edit_card(tmp_path / "b", class_bias=[0.0, "x", 1.0])
    with pytest.raises(ModelFileError, match="class_bias"):
        load_stance_model(tmp_path / "b")
