"""Throughput of `stance predict`'s engine against `transformers.pipeline("text-classification")` on the same model.

Fair setup: one model directory with an AutoModelForSequenceClassification head (pooling="auto") built from the
offline multilingual-e5-small (random 3-class head: throughput does not depend on the weights), loaded by both sides;
the same N quotes (1-2 sentences sampled from labeled/*.jsonl), the same thread count, the same process. Reported:

  pipeline        pipeline("text-classification", batch_size=32, top_k=None, truncation=True)
  engine          TransformerStance.load(dir).predict_proba (length-sorted, dynamically padded, inference_mode)
  engine --backend onnx          the same model exported to ONNX Runtime with fused kernels (same predictions)
  engine --int8                  the ONNX graph with int8 MatMul weights (= --backend onnx --int8; approximate)
  predict_file    the whole `stance predict` path: read Parquet, bad-row checks, engine, write Parquet

    python benchmarks/bench_predict.py [--n 2000] [--device cpu|cuda] [--batch-size 64] [--threads 0]
                                       [--agreement-model DIR]   # int8 vs fp32 on a trained model and the test split
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")


def build_quotes(n: int, seed: int = 0) -> list[str]:
    sentences = []
    for path in sorted(glob.glob(str(REPO / "labeled" / "*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                text = json.loads(line).get("text") or ""
                sentences += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if len(s.strip()) > 10]
    rng = random.Random(seed)
    return [" ".join(rng.sample(sentences, rng.choice((1, 2)))) for _ in range(n)]


def build_model(base: Path, out: Path, max_length: int) -> Path:
    import torch

    from train.models import TransformerStance

    torch.manual_seed(0)
    TransformerStance(str(base), pooling="auto", max_length=max_length, text_prefix="").build().save(out)
    return out


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--model", default=str(REPO / "models" / "multilingual-e5-small"))
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=0, help="engine batch size (default 64 on CPU, 256 on GPU)")
    p.add_argument("--pipeline-batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--agreement-model",
        default="",
        help="a trained stance model directory: also report int8 vs fp32 "
        "agreement and macro-F1 on the labeled test split (the random head above only bounds it)",
    )
    args = p.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from transformers import pipeline
    from transformers.utils import logging as hf_logging

    from train.inference import predict_file
    from train.models import TransformerStance
    from train.runtime import set_threads

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    threads = set_threads(args.threads) if args.device == "cpu" else torch.get_num_threads()
    batch = args.batch_size or (256 if args.device == "cuda" else 64)
    quotes = build_quotes(args.n)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(args.model), Path(tmp) / "model", args.max_length)
        # the pipeline gets the same dtype as the engine (bf16 on GPU) so that only the engine's work differs
        dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
        clf = pipeline("text-classification", model=str(model_dir), device=args.device, dtype=dtype)
        engine = TransformerStance.load(model_dir, device=args.device)
        run_pipe = lambda texts: clf(
            texts, batch_size=args.pipeline_batch_size, top_k=None, truncation=True, max_length=args.max_length
        )
        run_pipe(quotes[:64])  # warm-up: first calls allocate and pick kernels
        engine.predict_proba(quotes[:64], batch_size=batch)

        pipe_out, t_pipe = timed(lambda: run_pipe(quotes))
        # the pipeline as most scripts call it: no batch_size, one quote per forward pass
        _, t_pipe_default = timed(lambda: clf(quotes, top_k=None, truncation=True, max_length=args.max_length))
        proba, t_engine = timed(lambda: engine.predict_proba(quotes, batch_size=batch))
        src, dst = Path(tmp) / "quotes.parquet", Path(tmp) / "pred.parquet"
        pd.DataFrame({"id": range(len(quotes)), "text": quotes}).to_parquet(src)
        summary, t_file = timed(lambda: predict_file(engine, src, dst, batch_size=batch, chunk_rows=5000, detect_language=False))
        assert summary.rows == len(quotes) and summary.bad_rows == 0

        if args.device == "cpu":
            onnx_rows, onnx_agree = onnx_backend_rows(model_dir, quotes, proba, batch, Path(tmp) / "cache")

        # same model, same answers: the speed-up must not come from computing something else
        pipe_proba = np.array([[{d["label"]: d["score"] for d in row}[l] for l in engine.labels] for row in pipe_out])
        agree = float((pipe_proba.argmax(1) == proba.argmax(1)).mean())
        max_diff = float(np.abs(pipe_proba - proba).max())

    n = len(quotes)
    rows = [
        (f"pipeline (batch {args.pipeline_batch_size})", n / t_pipe),
        ("pipeline (default, unbatched)", n / t_pipe_default),
        (f"engine predict_proba (batch {batch})", n / t_engine),
        ("predict_file parquet->parquet", n / t_file),
    ]
    print(
        f"device {args.device}, torch threads {threads}, {os.cpu_count()} cores, load average before {load_before[0]:.2f} "
        f"after {os.getloadavg()[0]:.2f}; {n} quotes, max_length {args.max_length}"
    )
    if args.device == "cpu":
        rows += [(name, n / t) for name, t in onnx_rows]
    print(f"{'path':<36}{'rows/s':>10}{'vs pipeline':>14}")
    for name, rate in rows:
        print(f"{name:<36}{rate:>10.1f}{rate / rows[0][1]:>13.2f}x")
    print(f"engine vs the default (unbatched) pipeline: {t_pipe_default / t_engine:.2f}x")
    print(f"pipeline vs engine: argmax agreement {agree:.4f}, max |prob diff| {max_diff:.2e}")
    if args.device == "cpu":
        print(onnx_agree)
        print(
            f"engine --backend onnx vs the default (unbatched) pipeline: {t_pipe_default / dict(onnx_rows)['engine --backend onnx']:.2f}x"
        )
    if args.agreement_model:
        print(trained_agreement(Path(args.agreement_model), batch))
    return 0


def onnx_backend_rows(model_dir: Path, quotes, proba, batch: int, cache: Path):
    """Timed rows for the ONNX Runtime backend (export time reported apart: it is paid once per model)."""
    import numpy as np

    from train.models import TransformerStance

    os.environ["STANCE_CACHE"] = str(cache)
    rows, notes = [], []
    for name, int8 in (("engine --backend onnx", False), ("engine --int8 (onnx, approximate)", True)):
        model, t_export = timed(
            lambda: TransformerStance.load(model_dir, device="cpu", backend="onnx", int8=int8)
        )  # load + export
        model.predict_proba(quotes[:64], batch_size=batch)
        o_proba, t = timed(lambda: model.predict_proba(quotes, batch_size=batch))
        rows.append((name, t))
        agree = float((o_proba.argmax(1) == proba.argmax(1)).mean())
        notes.append(
            f"{name} vs torch engine: argmax agreement {agree:.4f}, max |prob diff| "
            f"{float(np.abs(o_proba - proba).max()):.2e}; one-time export {t_export:.0f} s"
        )
    return rows, "\n".join(notes)


def trained_agreement(model_dir: Path, batch: int) -> str:
    """int8 against fp32 on a trained model's own test split: agreement and macro-F1 with gold labels (a random head's
    near-ties make the agreement above a lower bound only)."""
    from sklearn.metrics import f1_score

    from train.data import load_statements
    from train.models import load_stance_model

    test = load_statements(REPO / "labeled").query("split == 'test'")
    texts, gold = test["text"].tolist(), test["stance"].tolist()
    fp32 = load_stance_model(model_dir, device="cpu")
    if fp32.kind != "transformer":
        return f"--agreement-model {model_dir}: a {fp32.kind} model has no int8 variants (pass a transformer model directory)"
    variants = {
        "fp32 (torch)": fp32,
        "fp32 (onnx)": load_stance_model(model_dir, device="cpu", backend="onnx"),
        "int8 (onnx)": load_stance_model(model_dir, device="cpu", backend="onnx", int8=True),
    }
    preds = {k: m.predict_proba(texts, batch_size=batch).argmax(1) for k, m in variants.items()}
    labels = fp32.labels
    lines = [f"trained model {model_dir}: {len(texts)} test rows"]
    for k, p in preds.items():
        f1 = f1_score(gold, [labels[i] for i in p], average="macro", labels=labels)
        lines.append(f"  {k:<14} macro-F1 {f1:.4f}  agreement with fp32 torch {float((p == preds['fp32 (torch)']).mean()):.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
