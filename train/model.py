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


class TransformerStance:
    """A fine-tuned encoder with a pooled linear head. sklearn-like: fit / predict_proba / predict."""

    kind = "transformer"

    def __init__(self, name: str, pooling: str = "mean", max_length: int = 128, text_prefix: str = "", dropout: float = 0.1):
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

        return fit_transformer(self, list(texts), list(labels), eval_texts, eval_labels, train_cfg, output_dir, callbacks, resume, eval_groups)

    def predict_proba(self, texts, batch_size: int = 64) -> np.ndarray:
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

    def predict(self, texts, batch_size: int = 64) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts, batch_size).argmax(1)]

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
        card = {"kind": self.kind, "labels": self.labels, "pooling": self.pooling, "max_length": self.max_length,
                "text_prefix": self.text_prefix, "base_model": self.name, "dropout": self.dropout}
        (path / MODEL_CARD).write_text(json.dumps(card, indent=2, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, device: str | None = None, precision: str = "auto"):
        from safetensors.torch import load_file
        from transformers import AutoTokenizer

        path = Path(path)
        card = json.loads((path / MODEL_CARD).read_text(encoding="utf-8"))
        self = cls(str(path), card["pooling"], card["max_length"], card.get("text_prefix", ""), card.get("dropout", 0.1))
        self.labels = card["labels"]
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
        backbone = load_backbone(str(path), self.pooling, len(self.labels))
        self.module = _classifier_module()(backbone, self.pooling, len(self.labels), self.dropout)
        if self.pooling != "auto":
            self.module.head.load_state_dict(load_file(str(path / "head.safetensors")))
        self.module.eval()
        self.name = card.get("base_model", str(path))
        return self.to(device or pick_device(), precision)


class BaselineStance:
    """TF-IDF over character n-grams + logistic regression: the scikit-learn reference beside the transformers."""

    kind = "baseline"

    def __init__(self, analyzer="char_wb", ngram_min=2, ngram_max=5, max_features=300000, C=4.0, class_weighting=True, seed=42):
        self.params = dict(analyzer=analyzer, ngram_min=ngram_min, ngram_max=ngram_max, max_features=max_features, C=C,
                           class_weighting=class_weighting, seed=seed)
        self.labels = list(LABELS)
        self.vectorizer = None
        self.clf = None

    def _vectorizer(self, vocabulary=None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        p = self.params
        return TfidfVectorizer(analyzer=p["analyzer"], ngram_range=(p["ngram_min"], p["ngram_max"]), lowercase=True,
                               sublinear_tf=True, min_df=1 if vocabulary is not None else 2, max_features=p["max_features"],
                               vocabulary=vocabulary, dtype=np.float32)

    def fit(self, texts, labels, **_ignored):
        from sklearn.linear_model import LogisticRegression

        y = np.array([self.labels.index(l) for l in labels])
        self.vectorizer = self._vectorizer()
        X = self.vectorizer.fit_transform(list(texts))
        self.clf = LogisticRegression(C=self.params["C"], max_iter=3000, random_state=self.params["seed"],
                                      class_weight="balanced" if self.params["class_weighting"] else None)
        self.clf.fit(X, y)
        return self

    def predict_proba(self, texts, batch_size: int = 0) -> np.ndarray:
        proba = self.clf.predict_proba(self.vectorizer.transform(list(texts)))
        full = np.zeros((proba.shape[0], len(self.labels)), dtype=np.float32)
        full[:, self.clf.classes_] = proba  # a class missing from training keeps probability 0
        return full

    def predict(self, texts, batch_size: int = 0) -> list[str]:
        return [self.labels[i] for i in self.predict_proba(texts).argmax(1)]

    def save(self, path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        vocab = {term: int(i) for term, i in self.vectorizer.vocabulary_.items()}
        (path / "vocabulary.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        # safetensors.numpy writes the raw buffer, so every array must be C-ordered: scikit-learn 1.9's multinomial
        # LogisticRegression returns a Fortran-ordered coef_, which would be saved scrambled (the loaded model then
        # predicts nearly the same probabilities for every text)
        arrays = {"idf": self.vectorizer.idf_.astype(np.float32), "coef": self.clf.coef_.astype(np.float64),
                  "intercept": self.clf.intercept_.astype(np.float64), "classes": self.clf.classes_.astype(np.int64)}
        save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / "baseline.safetensors"))
        os.chmod(path / "baseline.safetensors", 0o644)  # safetensors.numpy writes 0600
        card = {"kind": self.kind, "labels": self.labels, **self.params}
        (path / MODEL_CARD).write_text(json.dumps(card, indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path, device=None, precision="auto"):
        from safetensors.numpy import load_file
        from sklearn.linear_model import LogisticRegression

        path = Path(path)
        card = json.loads((path / MODEL_CARD).read_text(encoding="utf-8"))
        self = cls(**{k: card[k] for k in ("analyzer", "ngram_min", "ngram_max", "max_features", "C", "class_weighting", "seed")})
        self.labels = card["labels"]
        arrays = load_file(str(path / "baseline.safetensors"))
        vocab = json.loads((path / "vocabulary.json").read_text(encoding="utf-8"))
        self.vectorizer = self._vectorizer(vocabulary=vocab)
        self.vectorizer.fit([""])  # validates the fixed vocabulary; idf_ is replaced just below
        self.vectorizer.idf_ = arrays["idf"]
        self.clf = LogisticRegression()
        self.clf.coef_, self.clf.intercept_, self.clf.classes_ = arrays["coef"], arrays["intercept"], arrays["classes"]
        return self


def load_stance_model(path, device: str | None = None, precision: str = "auto"):
    """Load either kind of saved model from a local directory."""
    path = Path(path)
    card_path = path / MODEL_CARD
    if not card_path.is_file():
        raise FileNotFoundError(f"{path}: not a stance model directory (no {MODEL_CARD})")
    kind = json.loads(card_path.read_text(encoding="utf-8")).get("kind")
    cls = {"transformer": TransformerStance, "baseline": BaselineStance}.get(kind)
    if cls is None:
        raise ValueError(f"{card_path}: unknown model kind {kind!r}")
    return cls.load(path, device=device, precision=precision)
