"""Issue 12, items 4 and 13: values that torch / scikit-learn / numpy reject later, and data filters that select
nothing or a single class, fail before any MLflow run (or store) exists, as one line naming the key and what is valid."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, make_rows, tiny_overrides, write_jsonl
from train.config import ConfigError, load_config


@pytest.mark.parametrize(
    "override, valid",
    [
        ("train.lr=-1e-3", "> 0"),
        ("train.head_lr=-0.001", "> 0, or null"),
        ("model.dropout=1.0", "[0, 1)"),
        ("model.dropout=-0.1", "[0, 1)"),
        ("train.label_smoothing=1.5", "[0, 1]"),
        ("model.C=0", "> 0"),
        ("model.max_features=0", ">= 1"),
        ("train.seed=-1", "[0, 2**32)"),
        ("train.eval_batch_size=0", ">= 1"),
    ],
)
def test_out_of_range_values_name_key_value_and_range(override, valid):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert msg.startswith(f"{key}: ") and str(float(value) if "." in value or "e" in value else int(value)) in msg
    assert valid in msg and "\n" not in msg


def test_unknown_calibration_method_names_the_valid_ones():
    with pytest.raises(ConfigError, match=r"^train.calibration_method: 'platt' is not valid; valid: temperature, class_bias$"):
        load_config(None, ["train.calibration_method=platt"])
    assert load_config(None, ["train.calibration_method=class_bias"]).train.calibration_method == "class_bias"


def test_in_range_edge_values_pass():
    cfg = load_config(
        None, ["train.head_lr=null", "model.dropout=0", "train.label_smoothing=1", "model.max_features=null", "train.seed=0"]
    )
    assert cfg.train.head_lr is None and cfg.model.max_features is None


def cli_train(store_location, *overrides):
    from train.cli import app

    result = CliRunner().invoke(app, ["train", str(REPO / "configs/default.yaml"), *overrides])
    assert not (store_location / "mlflow.db").exists(), "the check must come before the store (and any run) is created"
    assert not store_location.exists() or not any(store_location.iterdir())
    return result


def error_line(result) -> str:
    lines = [l for l in result.output.splitlines() if l.strip()]
    assert len(lines) == 1, result.output
    return lines[0]


def test_cli_negative_head_lr_refused_before_a_run(tiny_corpus, tiny_model_dir, store_location):
    result = cli_train(store_location, *tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.head_lr": -0.001}))
    assert result.exit_code == 2
    assert "train.head_lr: -0.001" in error_line(result)


def test_cli_missing_local_model_dir_named_clearly(tiny_corpus, tmp_path, store_location):
    missing = tmp_path / "models" / "no-such-encoder"
    result = cli_train(store_location, *tiny_overrides(tiny_corpus, missing))
    assert result.exit_code == 2
    line = error_line(result)
    assert "model.name" in line and "no-such-encoder" in line and "Repo id" not in line


def test_cli_single_class_training_set_refused(tmp_path, tiny_model_dir, store_location):
    corpus = tmp_path / "one-class"
    write_jsonl(corpus / "s.jsonl", [r for r in make_rows() if r["stance"] == "hostile"])
    result = cli_train(store_location, *tiny_overrides(corpus, tiny_model_dir, **{"model.kind": "baseline"}))
    assert result.exit_code == 2
    line = error_line(result)
    assert "single class" in line and "hostile" in line


@pytest.mark.parametrize(
    "override, expect",
    [
        (
            "data.holdout_languages=[turkish]",
            "data.holdout_languages: 'turkish' is not a language code in the corpus (did you mean 'tr'?); valid: en, ru, tr",
        ),
        ("data.languages=[xx]", "data.languages: 'xx' is not a language code in the corpus; valid: en, ru, tr"),
        ("data.exclude_speaker_groups=[kremlin]", "data.exclude_speaker_groups: 'kremlin' is not a speaker_group"),
    ],
)
def test_cli_filter_values_absent_from_data(tiny_corpus, tiny_model_dir, store_location, override, expect):
    result = cli_train(store_location, *tiny_overrides(tiny_corpus, tiny_model_dir), override)
    assert result.exit_code == 2  # a wrong value in the config, like a wrong type or range
    line = error_line(result)
    assert expect in line and "valid:" in line and "Traceback" not in result.output


def test_cli_filters_leaving_no_rows(tiny_corpus, tiny_model_dir, store_location):
    result = cli_train(
        store_location, *tiny_overrides(tiny_corpus, tiny_model_dir), "data.languages=[en]", "data.exclude_languages=[en]"
    )
    assert result.exit_code == 2
    line = error_line(result)
    assert "leave no rows" in line and "data.languages=['en'], data.exclude_languages=['en']" in line


def test_cli_holdout_of_every_language_leaves_no_training_rows(tiny_corpus, tiny_model_dir, store_location):
    result = cli_train(store_location, *tiny_overrides(tiny_corpus, tiny_model_dir), "data.holdout_languages=[en, ru, tr]")
    assert result.exit_code == 2
    assert "data selection leaves an empty split: the 'train' set is empty" in error_line(result)


def test_hub_id_that_cannot_be_fetched_offline(monkeypatch, tmp_path):
    from train.config import check_model_source

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = load_config(None, ["model.name=someorg/no-such-encoder"])
    with pytest.raises(
        ConfigError, match=r"model.name: 'someorg/no-such-encoder' is neither a local directory nor in the Hugging Face cache"
    ):
        check_model_source(cfg)
    check_model_source(
        load_config(None, ["model.name=someorg/no-such-encoder", "model.kind=baseline"])
    )  # the baseline has no encoder
