"""Shared fixtures: a tiny corpus and a tiny BERT built by the test itself, and an isolated MLflow store per test
(copied from one store migrated once per session: migrating a fresh sqlite store costs ~4 s)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from train.schema import LABELS, split_for_id

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
REPO = Path(__file__).resolve().parents[1]

# Short phrases per label and language; stance is learnable from words, which is all a smoke test needs.
PHRASES = {
    "en": {
        "conciliatory": ["we hope for dialogue and friendship", "let us talk calmly", "peace and good neighbours"],
        "neutral": ["the ministry published a statement", "talks were held on monday", "the court received the claim"],
        "hostile": ["they will pay for this insult", "strike them hard now", "traitors must be punished"],
    },
    "ru": {
        "conciliatory": ["надеемся на диалог и дружбу", "давайте говорить спокойно", "мир и добрососедство"],
        "neutral": ["министерство опубликовало заявление", "переговоры прошли в понедельник", "суд получил иск"],
        "hostile": ["они заплатят за это оскорбление", "ударить по ним немедленно", "предателей надо наказать"],
    },
    "tr": {
        "conciliatory": ["diyalog ve dostluk umuyoruz", "sakin konuşalım", "barış ve iyi komşuluk"],
        "neutral": ["bakanlık bir açıklama yayımladı", "görüşmeler pazartesi yapıldı", "mahkeme başvuruyu aldı"],
        "hostile": ["bu hakaretin bedelini ödeyecekler", "onlara hemen sert vurun", "hainler cezalandırılmalı"],
    },
}
GROUPS = ["russian_military_blogger", "russian_official", "azerbaijani_official", "turkish_analyst", "ordinary_commentator"]


def make_rows(n_per_cell: int = 12, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for lang, by_label in PHRASES.items():
        k = 0
        for label in LABELS:
            for j in range(n_per_cell):
                k += 1
                phrase = rng.choice(by_label[label])
                extra = rng.choice(by_label[label])
                rid = f"{lang}-{k:04d}"
                rows.append(
                    {
                        "id": rid,
                        "text": f"{phrase}, {extra} #{j}",
                        "language": lang,
                        "stance": label,
                        "speaker": "test speaker",
                        "speaker_group": GROUPS[(k + j) % len(GROUPS)],
                        "source": "authored",
                        "date": "",
                        "split": split_for_id(rid),
                        "register": "comment",
                        "notes": "",
                    }
                )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


@pytest.fixture
def tiny_corpus(tmp_path) -> Path:
    d = tmp_path / "labeled"
    write_jsonl(d / "statements.jsonl", make_rows())
    return d


def build_tiny_model(out: Path) -> Path:
    """A 2-layer BERT with a word-level tokenizer trained on the tiny corpus: seconds to train, real code paths."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok.train_from_iterator([r["text"] for r in make_rows()], trainers.WordLevelTrainer(special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", model_max_length=64
    )
    import torch

    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def migrated_store_db(tmp_path_factory) -> Path:
    """An empty sqlite MLflow store, created and migrated once per session."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    d = tmp_path_factory.mktemp("mlflow-template")
    SqlAlchemyStore(f"sqlite:///{d / 'mlflow.db'}", (d / "artifacts").as_uri()).engine.dispose()
    return d / "mlflow.db"


@pytest.fixture
def store_location(tmp_path, monkeypatch) -> Path:
    """STANCE_MLRUNS pointed at tmp_path/mlruns, the working directory tmp_path; no store created (tests that check
    that nothing is created before a run starts use this)."""
    store = tmp_path / "mlruns"
    monkeypatch.setenv("STANCE_MLRUNS", str(store))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    yield store
    import mlflow

    while mlflow.active_run():
        mlflow.end_run()


@pytest.fixture
def mlflow_store(store_location, migrated_store_db) -> Path:
    """Each test gets its own sqlite store (a copy of the migrated one), and nothing leaks into the repository's mlruns/."""
    from mlflow.utils.uri import append_to_uri_path

    store = store_location
    store.mkdir()
    shutil.copyfile(migrated_store_db, store / "mlflow.db")
    with contextlib.closing(sqlite3.connect(store / "mlflow.db")) as con, con:  # the Default experiment's artifacts: this store's
        con.execute(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
            (append_to_uri_path((store / "artifacts").as_uri(), "0"),),
        )
    return store


def tiny_overrides(corpus: Path, model_dir: Path, **extra) -> list[str]:
    base = {
        "data.paths": f"[{corpus}]",
        "model.name": str(model_dir),
        "model.text_prefix": "",
        "train.epochs": 2,
        "train.batch_size": 8,
        "train.max_length": 32,
        "train.lr": 1e-3,
        "train.threads": 1,
        "output_dir": "outputs",
        "experiment": "test-exp",
        "register_as": "test-model",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def tracking_client():
    """An MlflowClient on the store setup_tracking picks (the test's own store under mlflow_store)."""
    from mlflow.tracking import MlflowClient

    from train.tracking import setup_tracking

    setup_tracking()
    return MlflowClient()
