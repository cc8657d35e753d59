"""Training from configs, tracked in MLflow: a fast end-to-end run on a tiny model, config errors, crash marking,
resume from a checkpoint, determinism, and the baseline logging the same metric names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import REPO, tiny_overrides, tracking_client
from train.config import ConfigError, load_config
from train.schema import LABELS

client = tracking_client


def only_run(experiment="test-exp"):
    c = client()
    exp = c.get_experiment_by_name(experiment)
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return c, runs


# -- configs ---------------------------------------------------------------------------------------------------------


def test_default_config_files_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        cfg = load_config(path)
        assert cfg.model.kind in ("transformer", "baseline"), path


def test_unknown_key_names_key_and_suggests(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "train.epoch" in msg and "Did you mean 'train.epochs'" in msg and "train.lr" in msg


def test_wrong_type_and_bad_choice_fail():
    with pytest.raises(ConfigError, match=r"train.lr: expected a number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"model.pooling: 'max' is not one of mean, cls, auto"):
        load_config(None, ["model.pooling=max"])
    with pytest.raises(ConfigError, match=r"train.freeze_embeddings: expected true/false"):
        load_config(None, ["train.freeze_embeddings=3"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["train.lr"])
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(None, ["trian.lr=1"])


def test_overrides_apply_with_types():
    cfg = load_config(
        REPO / "configs/default.yaml", ["train.lr=3e-5", "data.holdout_languages=[uk, az]", "train.epochs=2", "run_name=null"]
    )
    assert cfg.train.lr == 3e-5 and cfg.train.epochs == 2 and cfg.data.holdout_languages == ["uk", "az"] and cfg.run_name is None


def test_cli_config_error_exits_before_anything_runs(store_location):
    from train.cli import app

    result = CliRunner().invoke(app, ["train", str(REPO / "configs/default.yaml"), "train.learning_rate=1"])
    assert result.exit_code == 2
    assert "train.learning_rate" in result.output
    assert not (store_location / "mlflow.db").exists()


def test_help_is_fast_and_lazy():
    code = "import sys, train.cli; print(int(any(m in sys.modules for m in ('torch', 'mlflow', 'transformers', 'pandas'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO).stdout.strip()
    assert out == "0", "importing the CLI must not import heavy libraries"


# -- training runs ---------------------------------------------------------------------------------------------------


def train(corpus, model_dir, *extra, **kw):
    from train.pipeline import run_training

    cfg = load_config(None, tiny_overrides(corpus, model_dir, **kw) + list(extra))
    return run_training(cfg, quiet=True)


def test_transformer_run_logs_everything(tiny_corpus, tiny_model_dir, mlflow_store):
    import mlflow

    rid = train(tiny_corpus, tiny_model_dir)
    c = client()
    run = c.get_run(rid)
    assert run.info.status == "FINISHED"
    m, p, t = run.data.metrics, run.data.params, run.data.tags
    for key in [
        "macro_f1",
        "accuracy",
        "ece",
        "macro_f1_ci_low",
        "macro_f1_ci_high",
        "train_seconds",
        *[f"{s}_{l}" for s in ("precision", "recall", "f1") for l in LABELS],
        *[f"macro_f1_lang_{lang}" for lang in ("en", "ru", "tr")],
    ]:
        assert key in m, key
    assert p["train.lr"] == "0.001" and p["model.pooling"] == "mean" and int(p["n_train"]) > 0
    assert t["train.compute_dtype"] == "float32"  # CPU: fp32, read off the encoder's outputs during training
    assert (
        t["model_family"] and t["languages"] == "en,ru,tr" and t["git.commit"] and t["git.dirty"] in ("true", "false", "unknown")
    )
    epochs = [h.step for h in c.get_metric_history(rid, "val_macro_f1")]
    assert epochs == [1, 2]
    assert [h.step for h in c.get_metric_history(rid, "train_loss")] == [1, 2]
    arts = {a.path for a in c.list_artifacts(rid, "eval")}
    for name in (
        "confusion_matrix.png",
        "classification_report.txt",
        "predictions.json",
        "per_language_macro_f1.png",
        "reliability_diagram.png",
    ):
        assert f"eval/{name}" in arts, name
    inputs = run.inputs.dataset_inputs
    assert {i.tags[0].value for i in inputs} >= {"train", "eval"} and all(i.dataset.digest for i in inputs)
    versions = c.search_model_versions("name='test-model'")
    assert len(versions) == 1 and versions[0].run_id == rid

    model = mlflow.pyfunc.load_model(f"runs:/{rid}/model")
    import pandas as pd

    out = model.predict(pd.DataFrame({"text": ["we hope for dialogue", "strike them hard now"]}))
    probs = out[[f"prob_{l}" for l in LABELS]].to_numpy()
    assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert set(out["pred_stance"]) <= set(LABELS)


@pytest.mark.slow  # two runs
def test_baseline_logs_same_metric_names(tiny_corpus, tiny_model_dir, mlflow_store):
    rid_t = train(tiny_corpus, tiny_model_dir, register_as="null")
    rid_b = train(tiny_corpus, tiny_model_dir, "model.kind=baseline", register_as="test-baseline")
    c = client()
    mt, mb = c.get_run(rid_t).data.metrics, c.get_run(rid_b).data.metrics
    final = {k for k in mt if not k.startswith(("val_", "learning_rate", "train_loss"))}
    assert final <= set(mb), final - set(mb)
    assert c.get_run(rid_b).data.tags["model_family"] == "tfidf-logreg"
    # artifacts live in the store's own folder, not in ./mlruns of whatever directory the command ran from
    assert c.get_run(rid_b).info.artifact_uri.startswith((mlflow_store / "artifacts").as_uri())
    assert mb["macro_f1"] > 0.6  # the tiny corpus is separable by words


def test_crash_is_marked_failed_with_error(tiny_corpus, tiny_model_dir, mlflow_store, monkeypatch):
    import train.pipeline as training

    def boom(*a, **k):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(training, "evaluate_and_log", boom)
    with pytest.raises(RuntimeError):
        train(tiny_corpus, tiny_model_dir, "model.kind=baseline")
    c, runs = only_run()
    assert runs[0].info.status == "FAILED"
    assert "disk full (simulated)" in runs[0].data.tags["stance.error"]


def test_stale_running_run_is_marked_failed(mlflow_store):
    import mlflow

    from train import tracking

    tracking.setup_tracking()
    exp = tracking.get_experiment_id("test-exp")
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = mlflow.start_run(experiment_id=exp)
    import socket

    mlflow.set_tags({"stance.pid": str(proc.pid), "stance.host": socket.gethostname()})
    rid = run.info.run_id
    mlflow.end_run()
    client().set_terminated(rid, status="RUNNING")  # as a SIGKILLed process would leave it
    assert tracking.reconcile_stale_runs(exp) == [rid]
    assert client().get_run(rid).info.status == "FAILED"


@pytest.mark.slow  # two runs
def test_resume_continues_from_checkpoint(tiny_corpus, tiny_model_dir, mlflow_store, monkeypatch):
    from train.pipeline import run_training

    armed = interrupt_after_first_epoch(monkeypatch)
    cfg = load_config(
        None, tiny_overrides(tiny_corpus, tiny_model_dir, **{"train.epochs": 3, "train.early_stopping_patience": 0})
    )
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, quiet=True)
    c, runs = only_run()
    assert runs[0].info.status == "KILLED"
    first = runs[0].info.run_id
    armed["on"] = False
    rid = run_training(cfg, resume=True, quiet=True)
    assert rid == first
    assert c.get_run(rid).info.status == "FINISHED"
    assert [h.step for h in c.get_metric_history(rid, "train_loss")] == [1, 2, 3]  # epoch 1 was not trained again


def interrupt_after_first_epoch(monkeypatch) -> dict:
    """Training raises TrainingInterrupted when epoch 2 begins (as Ctrl-C or SIGTERM would) while the returned
    switch's "on" is true; set it false to let a resumed run finish."""
    from transformers import TrainerCallback

    import train.models.trainer as training
    from train.pipeline import TrainingInterrupted

    armed = {"on": True}

    class StopAfterFirstEpoch(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kw):
            if armed["on"] and state.epoch and state.epoch >= 1:
                raise TrainingInterrupted("simulated interrupt")

    monkeypatch.setattr(training, "fit_transformer", _with_extra_callback(training.fit_transformer, StopAfterFirstEpoch()))
    return armed


def _with_extra_callback(fn, cb):
    """fit_transformer with one more Trainer callback in its fit context."""
    import dataclasses

    def wrapped(*a, ctx, **k):
        return fn(*a, ctx=dataclasses.replace(ctx, trainer_callbacks=(*ctx.trainer_callbacks, cb)), **k)

    return wrapped


@pytest.mark.slow  # two runs
def test_same_config_and_seed_give_same_metrics(tiny_corpus, tiny_model_dir, mlflow_store):
    a = train(tiny_corpus, tiny_model_dir, register_as="null")
    b = train(tiny_corpus, tiny_model_dir, register_as="null")
    c = client()
    ma, mb = c.get_run(a).data.metrics, c.get_run(b).data.metrics
    for key in ("macro_f1", "accuracy", "ece", "val_macro_f1", "train_loss"):
        assert ma[key] == pytest.approx(mb[key], abs=1e-6), key


def test_invalid_data_fails_before_a_run_opens(tiny_corpus, tiny_model_dir, mlflow_store):
    from train.data import DataError

    bad = tiny_corpus / "statements.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace('"stance": "conciliatory"', '"stance": "friendly"')
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="friendly"):
        train(tiny_corpus, tiny_model_dir)
    c = client()
    exp = c.get_experiment_by_name("test-exp")
    assert exp is None or not c.search_runs([exp.experiment_id])


@pytest.mark.gpu
def test_gpu_bf16_training_run(tiny_corpus, tiny_model_dir, mlflow_store):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    rid = train(tiny_corpus, tiny_model_dir, register_as="null")
    run = client().get_run(rid)
    assert run.data.tags["device"] == "cuda" and run.info.status == "FINISHED"
    assert run.data.params["train.precision"] == "auto"
    # not only configured: the encoder's outputs during training were bf16 (read off a forward hook)
    assert run.data.tags["train.compute_dtype"] == ("bfloat16" if torch.cuda.is_bf16_supported() else "float32")
    assert run.data.tags["stance.verified"] == "passed"
