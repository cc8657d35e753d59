"""Training speed, memory and accuracy of head/optimizer/freezing choices, measured side by side in one run.

Each variant trains in its own subprocess (so peak RSS is its own) on the same data, seed and epochs, and is scored
on the validation split (choices are made on val, never on test). Prints one table and the ratios to the default.

    python benchmarks/bench_training.py                       # all variants, 3 epochs
    python benchmarks/bench_training.py --variants default,cls --epochs 2
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = {
    # name: overrides applied to configs/default.yaml
    "default": [],  # mean pooling, frozen word embeddings, fused AdamW
    "cls": ["model.pooling=cls"],
    "auto": ["model.pooling=auto"],  # AutoModelForSequenceClassification's <s>-token head (through the untrained pooler)
    "unfrozen": ["train.freeze_embeddings=false"],
    "freeze4": ["train.freeze_layers=4"],
    "unfused": ["train.freeze_embeddings=true", "+unfused"],
}


def run_one(name: str, epochs: int, config: str, max_train: int = 0) -> dict:
    import torch

    from train.config import load_config
    from train.data import prepare_data
    from train.metrics import compute_metrics
    from train.models import estimator_from_config
    from train.models.fitting import fit_context
    from train.runtime import set_threads
    from train.schema import LABELS

    overrides = [o for o in VARIANTS[name] if not o.startswith("+")]
    cfg = load_config(config, overrides + [f"train.epochs={epochs}", "train.early_stopping_patience=0"])
    set_threads(cfg.train.threads)
    _, parts = prepare_data(cfg)
    if max_train:  # a fixed random subsample keeps a full sweep affordable on 2 cores
        parts["train"] = parts["train"].sample(n=min(max_train, len(parts["train"])), random_state=0)
    model = estimator_from_config(cfg)
    if "+unfused" in VARIANTS[name]:
        original = torch.optim.AdamW

        def unfused(*a, **k):
            k.pop("fused", None)
            return original(*a, **k)

        torch.optim.AdamW = unfused
    out_dir = REPO / "outputs" / "bench" / name
    t0 = time.time()
    with fit_context(checkpoint_dir=out_dir):
        model.fit(parts["train"]["text"].tolist(), parts["train"]["stance"].tolist())
    seconds = time.time() - t0
    val = parts["val"]
    proba = model.predict_proba(val["text"].tolist())
    m = compute_metrics(val["stance"].map(LABELS.index), proba, val["language"].tolist())
    trainable = sum(p.numel() for p in model.module.parameters() if p.requires_grad)
    return {
        "variant": name,
        "s_per_epoch": seconds / epochs,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "val_macro_f1": m["macro_f1"],
        "trainable_m": trainable / 1e6,
        "n_train": len(parts["train"]),
        "n_val": len(val),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--config", default=str(REPO / "configs/default.yaml"))
    ap.add_argument("--max-train", type=int, default=0, help="subsample the training rows (0: all)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.epochs, args.config, args.max_train)), flush=True)
        return
    rows = []
    for name in args.variants.split(","):
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                name,
                "--epochs",
                str(args.epochs),
                "--config",
                args.config,
                "--max-train",
                str(args.max_train),
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if line is None:
            print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[7:]))
        r = rows[-1]
        print(
            f"{r['variant']:>10}: {r['s_per_epoch']:7.1f} s/epoch  {r['peak_rss_gb']:5.2f} GB  val macro-F1 {r['val_macro_f1']:.4f}",
            flush=True,
        )
    base = next((r for r in rows if r["variant"] == "default"), rows[0] if rows else None)
    if not base:
        return
    print(
        "\n| variant | trainable params (M) | s/epoch | x default time | peak RSS GB | val macro-F1 |\n|---|---:|---:|---:|---:|---:|"
    )
    for r in rows:
        print(
            f"| {r['variant']} | {r['trainable_m']:.1f} | {r['s_per_epoch']:.1f} | {r['s_per_epoch'] / base['s_per_epoch']:.2f} | "
            f"{r['peak_rss_gb']:.2f} | {r['val_macro_f1']:.4f} |"
        )
    print(f"\n{base['n_train']} train rows, {base['n_val']} val rows, {args.epochs} epochs each.")


if __name__ == "__main__":
    main()
