"""ONNX Runtime backend for CPU inference: the same model, exported once, run with fused transformer kernels.

Why: on a small CPU PyTorch's eager BERT spends much of its time outside the matrix multiplies (separate kernels for
bias, GELU, residual + LayerNorm, the attention softmax). ONNX Runtime's transformer optimizer fuses those
(Attention, BiasGelu, SkipLayerNormalization, EmbedLayerNormalization); fp32 results match PyTorch to ~1e-6, so
predictions are the same, only faster (figures in the README). With `int8=True` the MatMul weights are quantized
per output channel and activations dynamically: faster still, approximate. On the trained default model it moved
test macro-F1 from 0.898 to 0.885 (96% argmax agreement); per-tensor weights gave 0.877, and torch's own dynamic
quantization 0.798, which is why `--int8` always means this graph (`benchmarks/bench_predict.py --agreement-model`).

The export (torch.onnx, TorchScript exporter) and the optimization take ~30 s once per model; the result is cached
under `$STANCE_CACHE` (default `~/.cache/stance/onnx`, train.runtime.onnx_cache_dir) keyed by a digest of the model directory's files, written
atomically, so a changed model never reuses a stale graph. ONNX files are protobuf graphs: nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from train.models.card import model_fingerprint

from train.runtime import cpu_cores, onnx_cache_dir

FUSABLE_TYPES = ("bert", "roberta", "xlm-roberta", "camembert")  # layouts onnxruntime's "bert" optimizer recognises


def _logits_only(module):
    """torch.onnx wants positional tensors in and a tensor out; the classifier takes keywords and returns a dict."""
    import torch

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask)["logits"]

    return LogitsOnly(module).eval()


def export_onnx(model, path: Path, int8: bool = False) -> Path:
    """Export a TransformerStance's classifier (encoder + head) to an optimized ONNX graph at `path` (atomically)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = model.module.to("cpu").eval()
    config = module.backbone.config
    # The eager attention graph is the pattern onnxruntime fuses into its Attention op; SDPA exports to a graph it
    # cannot fuse (measured: fused eager ~1.2x faster than the SDPA export). Same maths, same weights.
    previous = getattr(config, "_attn_implementation", None)
    if previous is not None:
        config._attn_implementation = "eager"
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        raw = Path(tmp) / "raw.onnx"
        dummy = (torch.ones((2, 8), dtype=torch.long), torch.ones((2, 8), dtype=torch.long))
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer notes about shape-dependent Python branches, checked by tests
                torch.onnx.export(_logits_only(module), dummy, str(raw), input_names=["input_ids", "attention_mask"],
                                  output_names=["logits"], opset_version=17, dynamo=False,
                                  dynamic_axes={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                                                "logits": {0: "batch"}})
        finally:
            if previous is not None:
                config._attn_implementation = previous
        graph = raw
        if config.model_type in FUSABLE_TYPES:
            from onnxruntime.transformers.optimizer import optimize_model

            optimized = optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                                       hidden_size=config.hidden_size, opt_level=0)
            graph = Path(tmp) / "optimized.onnx"
            optimized.save_model_to_file(str(graph))
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized = Path(tmp) / "int8.onnx"
            # The fused ops come from the com.microsoft domain, which ONNX shape inference cannot type: say "float".
            quantize_dynamic(str(graph), str(quantized), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": 1})
            graph = quantized
        os.replace(graph, path)
    return path


class OnnxClassifier:
    """Runs the exported graph: (input_ids, attention_mask) int64 arrays -> logits, like the torch module."""

    def __init__(self, path: Path, threads: int = 0):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads or cpu_cores())  # as set_threads does for torch
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask})[0]


def onnx_classifier(model, model_dir: Path, int8: bool = False, threads: int = 0) -> OnnxClassifier:
    """The cached ONNX graph for the model saved in `model_dir` (exported on first use)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise RuntimeError("the onnx backend needs onnxruntime and onnx: pip install 'stance-lab[onnx]'") from e
    path = onnx_cache_dir() / model_fingerprint(model_dir) / ("model-int8.onnx" if int8 else "model.onnx")
    if not path.is_file():
        export_onnx(model, path, int8=int8)
    return OnnxClassifier(path, threads)
