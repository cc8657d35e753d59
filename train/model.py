"""The two stance models behind one small estimator interface: `fit`, `predict_proba`, `predict`, `save`, `load`.

`TransformerStance` fine-tunes any Hugging Face encoder with a pooled linear head; `BaselineStance` is TF-IDF over
character n-grams with logistic regression. Everything downstream (training, evaluation, batch inference, the
MLflow pyfunc) only uses that interface, so the two are interchangeable.

Saved model directories hold only JSON and safetensors: loading never unpickles anything and never runs remote code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from train.schema import LABELS

MODEL_CARD = "stance_model.json"
POOLINGS = ("mean", "cls", "auto")
DIRECT_POOLING_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")  # encoders whose AutoModel takes add_pooling_layer


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        return torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def cpu_cores() -> int:
    """Cores this process may run on (the affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(threads: int = 0) -> int:
    """Use one intra-op thread per core; more than that on a small CPU slows every step (oversubscription)."""
    import torch

    n = max(1, threads or cpu_cores())
    torch.set_num_threads(n)
    return n


def _classifier_module():
    """Defined lazily so that importing this module does not import torch (keeps `stance --help` fast)."""
    import torch
    from torch import nn

    class EncoderClassifier(nn.Module):
        """Encoder + pooling + linear head; computes a (class-weighted) cross-entropy loss for the Trainer."""

        def __init__(self, backbone, pooling: str, num_labels: int, dropout: float, class_weights=None, label_smoothing=0.0):
            super().__init__()
            self.backbone = backbone
            self.pooling = pooling
            self.config = backbone.config  # the Trainer reads model.config
            if pooling != "auto":
                self.dropout = nn.Dropout(dropout)
                self.head = nn.Linear(backbone.config.hidden_size, num_labels)
            weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights is not None else None
            self.register_buffer("class_weights", weights, persistent=False)
            self.label_smoothing = label_smoothing

        def forward(self, input_ids, attention_mask, labels=None, token_type_ids=None):
            if self.pooling == "auto":
                logits = self.backbone(input_ids=input_ids, attention_mask=attention_mask).logits
            else:
                hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                if self.pooling == "mean":
                    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                else:  # cls: the first token (<s> / [CLS]) without the pretrained pooler
                    pooled = hidden[:, 0]
                logits = self.head(self.dropout(pooled))
            out = {"logits": logits}
            if labels is not None:
                w = self.class_weights.to(logits.dtype) if self.class_weights is not None else None
                out["loss"] = nn.functional.cross_entropy(logits.float(), labels, weight=None if w is None else w.float(), label_smoothing=self.label_smoothing)
            return out

    return EncoderClassifier


def load_backbone(name: str, pooling: str, num_labels: int):
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    # Hub ids and local paths go through the same from_pretrained; remote code is never trusted.
    config = AutoConfig.from_pretrained(name, trust_remote_code=False)
    if pooling == "auto":
        return AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=num_labels, id2label=dict(enumerate(LABELS)), label2id={l: i for i, l in enumerate(LABELS)},
            trust_remote_code=False, use_safetensors=_local_has_safetensors(name),
        )
    extra = {"add_pooling_layer": False} if config.model_type in DIRECT_POOLING_TYPES else {}
    return AutoModel.from_pretrained(name, trust_remote_code=False, use_safetensors=_local_has_safetensors(name), **extra)


def _local_has_safetensors(name: str):
    """Local directories must hold safetensors; for Hub ids let transformers prefer safetensors itself."""
    p = Path(name)
    if p.is_dir():
        if not any(p.glob("*.safetensors")):
            raise FileNotFoundError(f"{p}: no *.safetensors weights (pickled .bin checkpoints are not loaded)")
        return True
    return None


class StanceEstimator:
    """What the two models share (scikit-learn style): `predict_proba` is the model's own class probabilities
    (`_raw_proba`), then temperature scaling fitted on held-out rows by `calibrate` (so a confidence of 0.9 means
    right about 90% of the time), then, if the constructor was given a `class_prior`, a shift from the label mix the
    model learned under (`train_prior`, set by fit: uniform with class weighting) to the mix expected where it is
    applied (Bayes' rule on the odds: p'(y|x) ~ p(y|x) * prior(y) / train_prior(y)). Both are stored in the card."""

    labels: list[str]
    temperature: float = 1.0
    class_prior: list[float] | None = None
    train_prior: list[float] | None = None

    def _raw_proba(self, texts, batch_size: int) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, texts, batch_size: int = 64) -> np.ndarray:
        return adjust_proba(self._raw_proba(texts, batch_size), self.temperature, self.class_prior, self.train_prior)

    def predict(self, texts, batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(1)]

    def calibrate(self, texts, labels, batch_size: int = 64) -> float:
        """Fit the temperature on held-out labeled rows (the validation split, never the evaluation rows)."""
        y = np.array([self.labels.index(l) for l in labels])
        self.temperature = fit_temperature(self._raw_proba(list(texts), batch_size), y)
        return self.temperature

    def _set_train_prior(self, labels, weighted: bool) -> None:
        if weighted:  # class-weighted loss: the model learned as if every class were equally common
            self.train_prior = [1.0 / len(self.labels)] * len(self.labels)
        else:
            counts = np.array([list(labels).count(l) for l in self.labels], dtype=float)
            self.train_prior = (counts / counts.sum()).tolist()

    def _post_card(self) -> dict:
        return {"temperature": self.temperature, "class_prior": self.class_prior, "train_prior": self.train_prior}

    def _load_post(self, card: dict) -> None:
        self.temperature = float(card.get("temperature", 1.0))
        self.class_prior, self.train_prior = card.get("class_prior"), card.get("train_prior")


def adjust_proba(proba: np.ndarray, temperature: float = 1.0, prior=None, train_prior=None) -> np.ndarray:
    """Temperature scaling and prior shift on the log-probabilities; the identity (bit for bit) when neither is set."""
    if temperature == 1.0 and prior is None:
        return proba
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0)) / temperature
    if prior is not None:
        base = np.asarray(train_prior if train_prior is not None else [1.0 / proba.shape[1]] * proba.shape[1])
        logp = logp + np.log(np.asarray(prior, dtype=np.float64)) - np.log(base)
    logp -= logp.max(1, keepdims=True)
    e = np.exp(logp)
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of the labels (Guo et al. 2017), in [0.05, 20]."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        return 1.0
    logp = np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))

    def nll(log_t):
        z = logp / np.exp(log_t)
        z = z - z.max(1, keepdims=True)
        return float(-(z[np.arange(len(y)), y] - np.log(np.exp(z).sum(1))).mean())

    return float(np.exp(minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded").x))


class TransformerStance(StanceEstimator):
    """A fine-tuned encoder with a pooled linear head. sklearn-like: fit / predict_proba / predict."""

    kind = "transformer"

    def __init__(self, name: str, pooling: str = "mean", max_length: int = 128, text_prefix: str = "", dropout: float = 0.1,
                 class_prior: list[float] | None = None):
        self.class_prior = class_prior
        if pooling not in POOLINGS:  # anything else would silently fall through to one of them
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.name, self.pooling, self.max_length, self.text_prefix, self.dropout = name, pooling, max_length, text_prefix, dropout
        self.module = None
        self.tokenizer = None
        self.labels = list(LABELS)
        self.device = "cpu"
        self.dtype = None
        self.runner = None  # an ONNX Runtime session replacing the torch module at inference (use_onnx)

    # -- building -------------------------------------------------------------------------------------------------
    def build(self, class_weights=None, label_smoothing: float = 0.0):
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.name, trust_remote_code=False)
        backbone = load_backbone(self.name, self.pooling, len(self.labels))
        self.module = _classifier_module()(backbone, self.pooling, len(self.labels), self.dropout, class_weights, label_smoothing)
        return self

    def tokenize(self, texts: list[str], padding=False):
        return self.tokenizer([self.text_prefix + t for t in texts], truncation=True, max_length=self.max_length, padding=padding)

    def freeze_embeddings(self) -> int:
        """Freeze the input word-embedding table (most parameters of a multilingual encoder); returns trainable count."""
        emb = self.module.backbone.get_input_embeddings()
        emb.weight.requires_grad_(False)
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    def freeze_lower_layers(self, n: int) -> int:
        """Freeze the lowest n transformer blocks (BERT/RoBERTa/DeBERTa layouts); returns the trainable count."""
        layers = None
        for attr in ("encoder.layer", "layers"):
            obj = self.module.backbone
            for part in attr.split("."):
                obj = getattr(obj, part, None)
            if obj is not None:
                layers = obj
                break
        if layers is None:
            raise ValueError(f"{self.name}: cannot find the transformer layers to freeze")
        for layer in list(layers)[:n]:
            layer.requires_grad_(False)
        return sum(p.numel() for p in self.module.parameters() if p.requires_grad)

    # -- the estimator interface -----------------------------------------------------------------------------------
    def fit(self, texts, labels, eval_texts=None, eval_labels=None, train_cfg=None, output_dir="outputs/run", callbacks=(), resume=False, eval_groups=None):
        from train.training import fit_transformer

        fit_transformer(self, list(texts), list(labels), eval_texts, eval_labels, train_cfg, output_dir, callbacks, resume, eval_groups)
        self._set_train_prior(labels, weighted=self.module.class_weights is not None)
        return self

    def _raw_proba(self, texts, batch_size: int = 64) -> np.ndarray:
        """Length-sorted batches with dynamic padding under inference_mode; rows come back in input order."""
        import torch

        texts = list(texts)
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        module = self.module.eval()
        enc = self.tokenize(texts)
        ids = enc["input_ids"]
        order = np.argsort([len(x) for x in ids], kind="stable")[::-1]
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        device = next(module.parameters()).device
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                width = max(len(ids[i]) for i in idx)
                width = min(self.max_length, -(-width // 8) * 8)  # multiples of 8 keep kernels' shapes few
                batch_ids = np.full((len(idx), width), pad_id, dtype=np.int64)
                batch_mask = np.zeros((len(idx), width), dtype=np.int64)
                for row, i in enumerate(idx):
                    batch_ids[row, : len(ids[i])] = ids[i]
                    batch_mask[row, : len(ids[i])] = 1
                if self.runner is not None:  # the ONNX Runtime backend (see use_onnx)
                    logits = torch.from_numpy(self.runner(batch_ids, batch_mask))
                else:
                    with torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype is not None and self.dtype != torch.float32):
                        logits = module(input_ids=torch.from_numpy(batch_ids).to(device), attention_mask=torch.from_numpy(batch_mask).to(device))["logits"]
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

    def use_onnx(self, model_dir, int8: bool = False, threads: int = 0):
        """Run predict_proba on ONNX Runtime (CPU): the same classifier exported once to a fused graph and cached."""
        from train.onnx_backend import onnx_classifier

        self.runner = onnx_classifier(self, Path(model_dir), int8=int8, threads=threads)
        return self

    def to(self, device: str, precision: str = "auto"):
        self.device = device
        self.dtype = resolve_dtype(precision, device)
        self.module.to(device)
        return self

    # -- persistence -------------------------------------------------------------------------------------------------
    def save(self, path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.module.backbone.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        if self.pooling != "auto":
            save_file({k: v.detach().contiguous().cpu() for k, v in self.module.head.state_dict().items()}, str(path / "head.safetensors"))
        write_card(path, {"kind": self.kind, "labels": self.labels, "pooling": self.pooling, "max_length": self.max_length,
                          "text_prefix": self.text_prefix, "base_model": self.name, "dropout": self.dropout, **self._post_card()})
        return path

    @classmethod
    def load(cls, path, device: str | None = None, precision: str = "auto"):
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        path = Path(path)
        card = read_card(path)
        self = cls(str(path), card["pooling"], card["max_length"], card.get("text_prefix", ""), card.get("dropout", 0.1))
        self.labels = card["labels"]
        self._load_post(card)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        backbone = load_backbone(str(path), self.pooling, len(self.labels))
        self.module = _classifier_module()(backbone, self.pooling, len(self.labels), self.dropout)
        if self.pooling != "auto":
            self.module.head.load_state_dict(load_file(str(path / "head.safetensors")))
        self.module.eval()
        self.name = card.get("base_model", str(path))
        return self.to(device or pick_device(), precision)


class BaselineStance(StanceEstimator):
    """TF-IDF over character n-grams + logistic regression: the scikit-learn reference beside the transformers.

    Persistence is skops (a format made for safe scikit-learn persistence; mlflow already depends on it), not
    hand-written array dumps: safetensors.numpy 0.8 writes a Fortran-ordered array's memory as if it were C-ordered
    (safetensors issue #825) and LogisticRegression's coef_ is Fortran-ordered, so every baseline saved that way
    predicted garbage once reloaded. skops stores arrays with numpy's own .npy format (order recorded) and loads only
    types on an explicit list (TRUSTED_TYPES on top of skops' default scikit-learn/numpy/scipy types): nothing
    outside it is ever instantiated, and nothing is unpickled. tests/test_model_io.py fails if the ordering bug
    comes back through any path.
    """

    kind = "baseline"
    FILE = "baseline.skops"
    TRUSTED_TYPES: list[str] = []  # skops' defaults cover Pipeline, TfidfVectorizer, LogisticRegression and numpy

    def __init__(self, analyzer="char_wb", ngram_min=2, ngram_max=5, max_features=300000, C=4.0, class_weighting=True, seed=42,
                 class_prior: list[float] | None = None):
        self.class_prior = class_prior
        self.params = dict(analyzer=analyzer, ngram_min=ngram_min, ngram_max=ngram_max, max_features=max_features, C=C,
                           class_weighting=class_weighting, seed=seed)
        self.labels = list(LABELS)
        self.pipeline = None

    def fit(self, texts, labels, **_ignored):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline

        p = self.params
        y = np.array([self.labels.index(l) for l in labels])
        self.pipeline = Pipeline([
            ("tfidf", TfidfVectorizer(analyzer=p["analyzer"], ngram_range=(p["ngram_min"], p["ngram_max"]), lowercase=True,
                                      sublinear_tf=True, min_df=2, max_features=p["max_features"], dtype=np.float32)),
            ("clf", LogisticRegression(C=p["C"], max_iter=3000, random_state=p["seed"],
                                       class_weight="balanced" if p["class_weighting"] else None)),
        ]).fit(list(texts), y)
        self._set_train_prior(labels, weighted=p["class_weighting"])
        return self

    def _raw_proba(self, texts, batch_size: int = 0) -> np.ndarray:
        proba = self.pipeline.predict_proba(list(texts))
        full = np.zeros((proba.shape[0], len(self.labels)), dtype=np.float32)
        full[:, self.pipeline.classes_] = proba  # a class missing from training keeps probability 0
        return full

    def save(self, path) -> Path:
        import skops.io as sio

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        sio.dump(self.pipeline, path / self.FILE)
        write_card(path, {"kind": self.kind, "labels": self.labels, **self.params, **self._post_card()})
        return path

    @classmethod
    def load(cls, path, device=None, precision="auto"):
        import skops.io as sio

        path = Path(path)
        card = read_card(path)
        self = cls(**{k: card[k] for k in ("analyzer", "ngram_min", "ngram_max", "max_features", "C", "class_weighting", "seed")})
        self._load_post(card)
        file = path / cls.FILE
        if not file.is_file():
            old = " (saved by an older version whose safetensors arrays reload transposed: retrain it)" if (path / "baseline.safetensors").exists() else ""
            raise ModelFileError(f"{path}: no {cls.FILE}{old}")
        untrusted = [t for t in sio.get_untrusted_types(file=file) if t not in cls.TRUSTED_TYPES]
        if untrusted:
            raise ModelFileError(f"{file}: refusing to load types outside the trusted list: {', '.join(untrusted)}")
        self.pipeline = sio.load(file, trusted=cls.TRUSTED_TYPES)
        return self


class ModelFileError(ValueError):
    """A saved model directory that is incomplete, altered or inconsistent: refused before anything is predicted."""


def file_digests(path: Path) -> dict[str, str]:
    """sha256 of every file a saved model consists of (the card itself aside)."""
    from train.hashing import sha256_file

    return {str(f.relative_to(path)): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file() and f.name != MODEL_CARD}


def write_card(path: Path, card: dict) -> None:
    """The card is written last and lists every file's digest, so a partial or altered directory is detected on load."""
    card = {**card, "files": file_digests(path)}
    (path / MODEL_CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")


def read_card(path: Path) -> dict:
    """The card, checked against what the code can run and against the files next to it."""
    card_path = Path(path) / MODEL_CARD
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{card_path}: unreadable model card: {e}") from e
    if card.get("kind") not in ("transformer", "baseline"):
        raise ModelFileError(f"{card_path}: kind {card.get('kind')!r} is not one of transformer, baseline")
    # The head's outputs are in training order, which is always LABELS: another order here would swap classes.
    if card.get("labels") != list(LABELS):
        raise ModelFileError(f"{card_path}: labels {card.get('labels')!r} must be {list(LABELS)!r} in this order")
    if card["kind"] == "transformer" and card.get("pooling") not in POOLINGS:
        raise ModelFileError(f"{card_path}: pooling {card.get('pooling')!r} is not one of {', '.join(POOLINGS)}")
    prior, temperature = card.get("class_prior"), card.get("temperature", 1.0)
    if not (isinstance(temperature, (int, float)) and temperature > 0):
        raise ModelFileError(f"{card_path}: temperature {temperature!r} must be a number > 0")
    if prior is not None and not (isinstance(prior, list) and len(prior) == len(LABELS) and all(isinstance(x, (int, float)) and x > 0 for x in prior)):
        raise ModelFileError(f"{card_path}: class_prior {prior!r} must be {len(LABELS)} numbers > 0 or null")
    expected = card.get("files")
    if expected is not None:  # directories saved before digests were recorded have none to check
        found = file_digests(Path(path))
        missing = sorted(set(expected) - set(found))
        changed = sorted(k for k in expected if k in found and found[k] != expected[k])
        if missing or changed:
            what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "", f"changed since saved: {', '.join(changed)}" if changed else "") if x)
            raise ModelFileError(f"{path}: model files do not match the card ({what})")
    return card


def load_stance_model(path, device: str | None = None, precision: str = "auto"):
    """Load either kind of saved model from a local directory."""
    path = Path(path)
    card_path = path / MODEL_CARD
    if not card_path.is_file():
        raise FileNotFoundError(f"{path}: not a stance model directory (no {MODEL_CARD})")
    kind = read_card(path)["kind"]  # validated here once more by the class's own load
    cls = {"transformer": TransformerStance, "baseline": BaselineStance}[kind]
    return cls.load(path, device=device, precision=precision)
