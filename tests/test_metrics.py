import numpy as np
import pytest

from train.metrics import bootstrap_macro_f1, compute_metrics, expected_calibration_error


def onehot(idx, n=3, p=0.9):
    out = np.full((len(idx), n), (1 - p) / (n - 1))
    out[np.arange(len(idx)), idx] = p
    return out


def test_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = compute_metrics(y, onehot(pred), ["en", "en", "en", "ru", "ru", "ru"])
    # per class: conciliatory P=1/2 R=1/2; neutral P=2/3 R=1; hostile P=1 R=1/2
    f = [0.5, 0.8, 2 / 3]
    assert m["macro_f1"] == pytest.approx(np.mean(f))
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_neutral"] == pytest.approx(0.8) and m["recall_hostile"] == pytest.approx(0.5)
    # en: gold 0,0,1 pred 0,1,1 -> classes {0,1}: F1 0.667 and 0.667
    assert m["macro_f1_lang_en"] == pytest.approx(2 / 3)


def test_language_with_one_row_is_not_scored_against_absent_classes():
    m = compute_metrics(np.array([0, 1, 2, 2]), onehot(np.array([0, 1, 2, 2])), ["en", "en", "en", "de"])
    assert m["macro_f1_lang_de"] == pytest.approx(1.0)


def test_ece_zero_when_confidence_equals_accuracy_and_positive_otherwise():
    y = np.array([0, 1, 2, 0])
    assert expected_calibration_error(y, onehot(y, p=1.0)) == pytest.approx(0.0)
    assert expected_calibration_error(y, onehot(np.array([1, 2, 0, 1]), p=0.9)) == pytest.approx(0.9)


def test_bootstrap_interval_contains_point_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    pred = np.where(rng.random(2000) < 0.8, y, rng.integers(0, 3, 2000))
    lo, hi = bootstrap_macro_f1(y, pred, n=300)
    lo_s, hi_s = bootstrap_macro_f1(y[:100], pred[:100], n=300)
    from sklearn.metrics import f1_score

    point = f1_score(y, pred, average="macro")
    assert lo < point < hi and (hi - lo) < (hi_s - lo_s)
