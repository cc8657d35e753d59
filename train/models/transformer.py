"""A fine-tuned Hugging Face encoder with a pooled linear head, behind the StanceEstimator interface.

Hyperparameters go to the constructor (`train`: a TrainConfig), data to `fit` (train.models.fitting explains the
fit context for checkpoints and progress). This module is what inference needs (build, load, predict_proba, save);
the Trainer loop that fit runs lives in train.models.trainer and is imported only by fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train.config import TrainConfig
from train.models.base import StanceEstimator
from train.models.card import POOLINGS, read_card, write_card
from train.models.fitting import current_fit_context
from train.models.onnx import onnx_classifier
from train.runtime import pick_device, resolve_dtype
from train.schema import LABELS

DIRECT_POOLING_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")  # encoders whose AutoModel takes add_pooling_layer


class BackendError(ValueError):
    """A runtime that cannot run here (the ONNX backend on a GPU)."""


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



class TransformerStance(StanceEstimator):
    """A fine-tuned encoder with a pooled linear head. sklearn-like: fit / predict_proba / predict."""

    kind = "transformer"

    def __init__(self, name: str, pooling: str = "mean", max_length: int = 128, text_prefix: str = "", dropout: float = 0.1,
                 class_prior: list[float] | None = None, train: TrainConfig | None = None):
        self.class_prior = class_prior
        if pooling not in POOLINGS:  # anything else would silently fall through to one of them
            raise ValueError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
        self.name, self.pooling, self.max_length, self.text_prefix, self.dropout = name, pooling, max_length, text_prefix, dropout
        self.train = train  # the training hyperparameters (None: TrainConfig's defaults)
        self.module = None
        self.tokenizer = None
        self.labels = list(LABELS)
        self.device = "cpu"
        self.dtype = None
        self.runner = None  # an ONNX Runtime session replacing the torch module at inference (load's backend)

    @classmethod
    def from_config(cls, cfg) -> "TransformerStance":
        m, t = cfg.model, cfg.train
        return cls(m.name, m.pooling, t.max_length, m.text_prefix, m.dropout, m.class_prior, train=t)

    # -- building -------------------------------------------------------------------------------------------------
    def build(self, class_weights=None, label_smoothing: float = 0.0):
        """Tokenizer, pretrained encoder and a fresh head (untrained); fit builds it with the training set's weights."""
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
    def fit(self, texts, labels, eval_texts=None, eval_labels=None, eval_groups=None):
        """Fine-tune a fresh head (and the unfrozen encoder) on the texts; `eval_*` is the validation split, scored
        every epoch (per group, e.g. language) for early stopping. The Trainer loop lives in train.models.trainer."""
        # the training loop: imported here so that a model used only for inference never loads it
        from train.models import trainer

        trainer.fit_transformer(self, list(texts), list(labels), eval_texts, eval_labels, eval_groups, ctx=current_fit_context())
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
                if self.runner is not None:  # the ONNX Runtime backend (load(..., backend="onnx"))
                    logits = torch.from_numpy(self.runner(batch_ids, batch_mask))
                else:
                    with torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype is not None and self.dtype != torch.float32):
                        logits = module(input_ids=torch.from_numpy(batch_ids).to(device), attention_mask=torch.from_numpy(batch_mask).to(device))["logits"]
                out[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return out

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
    def load(cls, path, device: str | None = None, precision: str = "auto", backend: str = "torch", int8: bool = False, threads: int = 0):
        """Load a saved model. backend "onnx" (CPU only) runs predict_proba on ONNX Runtime: the same classifier exported
        once to a fused graph and cached (int8: quantized weights, approximate); see train.models.onnx."""
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
        self.to(device or pick_device(), precision)
        if backend == "onnx":
            if self.device != "cpu":
                raise BackendError("--backend onnx and --int8 are for the CPU; on a GPU use the default torch backend (bf16)")
            self.runner = onnx_classifier(self, path, int8=int8, threads=threads)
        return self
