"""The ONNX Runtime backend: same probabilities as torch (fp32), a cached export keyed by the model's content, int8 as
a valid approximation, and `stance predict --backend onnx` end to end. The model is the tiny BERT (2 layers), which
goes through the same export, fusion and quantization code as e5."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.conftest import make_rows
from train.cli import app
from train.models import TransformerStance, load_stance_model

pytestmark = pytest.mark.slow  # a trained run exported to ONNX (optional extra)

pytest.importorskip("onnxruntime")


@pytest.fixture()
def onnx_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STANCE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture(scope="module")
def trained_dir(tiny_model_dir, tmp_path_factory):
    """A tiny model with a non-random head (a quick fit), so that the probabilities differ across rows and classes."""
    import torch

    torch.manual_seed(0)
    rows = make_rows()
    model = TransformerStance(str(tiny_model_dir), max_length=16).build()
    opt = torch.optim.AdamW(model.module.parameters(), lr=3e-3)
    enc = model.tokenize([r["text"] for r in rows], padding=True)
    labels = torch.tensor([model.labels.index(r["stance"]) for r in rows])
    model.module.train()
    for _ in range(30):
        loss = model.module(
            input_ids=torch.tensor(enc["input_ids"]), attention_mask=torch.tensor(enc["attention_mask"]), labels=labels
        )["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.save(tmp_path_factory.mktemp("onnx-tiny") / "model")


TEXTS = [r["text"] for r in make_rows()[:40]] + ["x", "a much longer statement " * 6, "🇦🇿🕊️🇷🇺"]


def test_onnx_matches_torch_and_is_cached(trained_dir, onnx_cache):
    torch_proba = load_stance_model(trained_dir, device="cpu").predict_proba(TEXTS, batch_size=8)
    assert torch_proba.std(axis=0).max() > 0.01  # a real spread of probabilities, not a constant
    model = load_stance_model(trained_dir, device="cpu", backend="onnx")
    graphs = list(onnx_cache.rglob("model.onnx"))
    assert len(graphs) == 1
    onnx_proba = model.predict_proba(TEXTS, batch_size=8)
    assert np.allclose(onnx_proba, torch_proba, atol=1e-5)
    assert (onnx_proba.argmax(1) == torch_proba.argmax(1)).all()
    # batch size and order do not matter (length-sorted batches, order restored)
    assert np.allclose(model.predict_proba(TEXTS[::-1], batch_size=3)[::-1], onnx_proba, atol=1e-5)
    # the second use loads the cached graph instead of exporting again
    stamp = graphs[0].stat().st_mtime_ns
    load_stance_model(trained_dir, device="cpu", backend="onnx")
    assert graphs[0].stat().st_mtime_ns == stamp and len(list(onnx_cache.rglob("*.onnx"))) == 1


def test_changed_weights_get_a_fresh_export(trained_dir, onnx_cache, tmp_path):
    copy = shutil.copytree(trained_dir, tmp_path / "copy")
    load_stance_model(copy, device="cpu", backend="onnx")
    from safetensors.torch import load_file, save_file

    head = load_file(str(copy / "head.safetensors"))
    save_file({k: v * -1 for k, v in head.items()}, str(copy / "head.safetensors"))
    import json

    from train.models import MODEL_CARD, write_card

    write_card(copy, json.loads((copy / MODEL_CARD).read_text()))  # a legitimate re-save records the new digests
    flipped = load_stance_model(copy, device="cpu")
    expected = flipped.predict_proba(TEXTS)
    assert np.allclose(load_stance_model(copy, device="cpu", backend="onnx").predict_proba(TEXTS), expected, atol=1e-5)
    assert len(list(onnx_cache.rglob("model.onnx"))) == 2


def test_int8_graph_is_a_close_approximation(trained_dir, onnx_cache):
    exact = load_stance_model(trained_dir, device="cpu").predict_proba(TEXTS)
    approx = load_stance_model(trained_dir, device="cpu", backend="onnx", int8=True).predict_proba(TEXTS)
    assert list(onnx_cache.rglob("model-int8.onnx"))
    assert np.allclose(approx.sum(1), 1, atol=1e-5)
    assert np.abs(approx - exact).max() < 0.2 and not np.array_equal(approx, exact)


def test_cli_backend_onnx_gives_the_torch_predictions(trained_dir, onnx_cache, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": range(len(TEXTS) + 1), "text": TEXTS + [""]}).to_csv(src, index=False)
    outs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"out-{backend}.parquet"
        result = CliRunner().invoke(
            app,
            [
                "predict",
                "-m",
                str(trained_dir),
                "-i",
                str(src),
                "-o",
                str(out),
                "--backend",
                backend,
                "--no-detect-language",
                "--chunk-size",
                "10",
            ],
        )
        assert result.exit_code == 0, result.output
        outs[backend] = pd.read_parquet(out)
    assert outs["onnx"]["pred_stance"].tolist() == outs["torch"]["pred_stance"].tolist()
    assert outs["onnx"]["pred_error"].tolist()[-1] == "missing text"  # an empty CSV cell reads as missing
    probs = [c for c in outs["onnx"].columns if c.startswith("prob_")]
    assert np.allclose(outs["onnx"][probs].to_numpy(float), outs["torch"][probs].to_numpy(float), atol=1e-5, equal_nan=True)
    bad = CliRunner().invoke(
        app, ["predict", "-m", str(trained_dir), "-i", str(src), "-o", str(tmp_path / "x.parquet"), "--backend", "tensorrt"]
    )
    assert bad.exit_code == 2 and "--backend" in bad.output


@pytest.mark.parametrize("pooling", ["cls", "auto"])
def test_other_heads_export_too(pooling, tiny_model_dir, onnx_cache, tmp_path):
    import torch

    torch.manual_seed(1)
    path = TransformerStance(str(tiny_model_dir), pooling=pooling, max_length=16).build().save(tmp_path / pooling)
    expected = load_stance_model(path, device="cpu").predict_proba(TEXTS)
    assert np.allclose(load_stance_model(path, device="cpu", backend="onnx").predict_proba(TEXTS), expected, atol=1e-5)


def test_int8_flag_means_the_onnx_int8_graph(trained_dir, onnx_cache, tmp_path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        app, ["predict", "-m", str(trained_dir), "-i", str(src), "-o", str(out), "--int8", "--no-detect-language"]
    )
    assert result.exit_code == 0, result.output
    assert list(onnx_cache.rglob("model-int8.onnx")) and not list(onnx_cache.rglob("model.onnx"))
    expected = load_stance_model(trained_dir, device="cpu", backend="onnx", int8=True).predict_proba(TEXTS)
    assert np.allclose(pd.read_csv(out)[["prob_conciliatory", "prob_neutral", "prob_hostile"]].to_numpy(), expected, atol=1e-5)
    spark = CliRunner().invoke(
        app, ["predict", "-m", str(trained_dir), "-i", str(src), "-o", str(out), "--int8", "--engine", "spark"]
    )
    assert spark.exit_code == 2 and "--engine local" in spark.output
