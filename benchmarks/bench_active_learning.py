"""Does the labeling loop pay? A learning curve of real-text macro-F1, active learning against random sampling.

The "collection" is ../shared/external/realquotes-dev/realquotes_dev.jsonl (read from there, never copied): its labels
are what an annotator would give. It is split once (fixed seed, stratified by label x language: ru en az tr uk and
"other") into a pool and an evaluation part. Starting from the default model (the trained run's artifacts, copied to a
temp dir by MLflow's download; the store is only read), each size n of labeled pool rows is chosen by
`train.coding.selection.select` (uncertainty + k-means diversity on the model's own embeddings, one batch from the
starting model) and by a seeded random sample; the model is then fine-tuned on those rows mixed with a fixed replay
sample of the authored corpus (its train split), and scored on the evaluation part (macro-F1 and its bootstrap 95%
interval, train.metrics). n = 0 is the starting model itself and, as a control, the same fine-tune on the replay
rows alone (what the fine-tuning does without any collection labels).

Design for a 2-core CPU (budget: 30 minutes of CPU; the defaults took 13.5 minutes, 35 minutes wall on a shared
machine): the lower encoder layers stay frozen, and their output for
every row (pool, evaluation, replay) is computed once and cached, so each fine-tune runs only the top `--train-layers`
blocks and the head (default: the top block, 3 epochs, 100 replay rows). The cached path reproduces the full model's probabilities (checked at start).

    STANCE_MLRUNS=/work/main/mlruns STANCE_MODELS_DIR=/work/main/models \
      python benchmarks/bench_active_learning.py --output /tmp/al_results.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CORE = ("ru", "en", "az", "tr", "uk")
DEFAULT_COLLECTION = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "external" / "realquotes-dev" / "realquotes_dev.jsonl"
)


def split_collection(rows: list[dict], seed: int, eval_share: float = 0.5):
    """Pool and evaluation rows, stratified by label x language (core languages, else "other")."""
    from sklearn.model_selection import train_test_split

    strata = [f"{r['stance']}|{r['language'] if r['language'] in CORE else 'other'}" for r in rows]
    pool, ev = train_test_split(list(range(len(rows))), test_size=eval_share, random_state=seed, stratify=strata)
    return [rows[i] for i in sorted(pool)], [rows[i] for i in sorted(ev)]


class CachedTop:
    """The model split at block K: hidden states entering block K cached per row; blocks K.. and the head trainable."""

    def __init__(self, model, train_layers: int):
        self.model = model
        self.backbone = model.module.backbone
        self.layers = list(self.backbone.encoder.layer)
        self.k = len(self.layers) - train_layers
        self.top = self.layers[self.k :]
        self.head = model.module.head

    def cache(self, texts: list[str], batch_size: int = 32) -> list:
        import torch

        out = [None] * len(texts)
        enc = self.model.tokenize(texts)["input_ids"]
        order = np.argsort([len(x) for x in enc])
        self.model.module.eval()
        with torch.inference_mode():
            for s in range(0, len(order), batch_size):
                idx = order[s : s + batch_size]
                width = max(len(enc[i]) for i in idx)
                ids = torch.zeros((len(idx), width), dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for r, i in enumerate(idx):
                    ids[r, : len(enc[i])] = torch.as_tensor(enc[i])
                    mask[r, : len(enc[i])] = 1
                hs = self.backbone(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[self.k]
                for r, i in enumerate(idx):
                    out[i] = hs[r, : len(enc[i])].clone()
        return out

    def logits(self, cached: list):
        import torch

        width = max(h.shape[0] for h in cached)
        hidden = torch.zeros((len(cached), width, cached[0].shape[1]))
        mask = torch.zeros((len(cached), width))
        for r, h in enumerate(cached):
            hidden[r, : h.shape[0]] = h
            mask[r, : h.shape[0]] = 1
        additive = (1.0 - mask)[:, None, None, :] * torch.finfo(hidden.dtype).min
        for layer in self.top:
            hidden = layer(hidden, attention_mask=additive)
            hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        m = mask.unsqueeze(-1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        return self.head(self.model.module.dropout(pooled))

    def proba(self, cached: list, batch_size: int = 64) -> np.ndarray:
        import torch

        for mod in self.top + [self.head, self.model.module.dropout]:
            mod.eval()
        with torch.inference_mode():
            parts = [
                torch.softmax(self.logits(cached[s : s + batch_size]), -1).numpy() for s in range(0, len(cached), batch_size)
            ]
        return np.concatenate(parts)

    def state(self):
        return {i: {k: v.clone() for k, v in m.state_dict().items()} for i, m in enumerate(self.top + [self.head])}

    def restore(self, state) -> None:
        for i, m in enumerate(self.top + [self.head]):
            m.load_state_dict(state[i])

    def fit(self, cached: list, y: np.ndarray, seed: int, epochs: int, lr: float, head_lr: float, batch_size: int = 16) -> None:
        import torch

        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        params = [
            {"params": [p for layer in self.top for p in layer.parameters()], "lr": lr},
            {"params": list(self.head.parameters()), "lr": head_lr},
        ]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        counts = np.bincount(y, minlength=3).astype(float)
        weights = torch.as_tensor(np.where(counts > 0, counts.sum() / (3 * np.maximum(counts, 1)), 0.0), dtype=torch.float32)
        for mod in self.top + [self.head, self.model.module.dropout]:
            mod.train()
        for _ in range(epochs):
            perm = rng.permutation(len(cached))
            for s in range(0, len(perm), batch_size):
                idx = perm[s : s + batch_size]
                logits = self.logits([cached[i] for i in idx])
                loss = torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[idx]), weight=weights)
                opt.zero_grad()
                loss.backward()
                opt.step()


def score(y_true, proba) -> dict:
    from train.metrics import bootstrap_macro_f1, compute_metrics

    m = compute_metrics(y_true, proba)
    lo, hi = bootstrap_macro_f1(y_true, np.asarray(proba).argmax(1))
    return {"macro_f1": m["macro_f1"], "ci_low": lo, "ci_high": hi, "recall_hostile": m["recall_hostile"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs:/87f278a5afc24b0f87fc0b43668bccfe/model", help="model URI or directory")
    ap.add_argument("--collection", type=Path, default=DEFAULT_COLLECTION)
    ap.add_argument("--sizes", default="25,50,100,all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--replay", type=int, default=100, help="authored train rows mixed into every fine-tune")
    ap.add_argument("--train-layers", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--head-lr", type=float, default=3e-4)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0, help="use only this many collection rows (a quick check)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--output", type=Path, default=Path("/tmp/al_results.json"))
    args = ap.parse_args()

    import torch

    from train.coding.selection import score_pool, select
    from train.data import load_statements
    from train.models import load_stance_model
    from train.schema import LABELS
    from train.tracking.registry import resolve_model

    torch.set_num_threads(args.threads)
    t0, cpu0 = time.time(), time.process_time()
    rows = [json.loads(line) for line in args.collection.read_text(encoding="utf-8").splitlines() if line.strip()]
    if args.limit:
        rows = rows[: args.limit]
    pool, ev = split_collection(rows, args.split_seed)
    labeled = load_statements([Path(__file__).resolve().parents[1] / "labeled"])
    replay = labeled[labeled["split"] == "train"].sample(n=args.replay, random_state=0)
    tmp = tempfile.mkdtemp(prefix="bench-al-")
    model = load_stance_model(resolve_model(args.model, Path(tmp))[0], device="cpu")
    model.max_length = args.max_length
    y_of = lambda rs: np.array([LABELS.index(r["stance"]) for r in rs])
    y_pool, y_ev, y_replay = y_of(pool), y_of(ev), np.array([LABELS.index(s) for s in replay["stance"]])

    top = CachedTop(model, args.train_layers)
    c_pool, c_ev, c_replay = (
        top.cache([r["text"] for r in pool]),
        top.cache([r["text"] for r in ev]),
        top.cache(list(replay["text"])),
    )
    base_ev = model.predict_proba([r["text"] for r in ev])
    gap = float(np.abs(top.proba(c_ev) - base_ev).max())
    assert gap < 1e-3, f"the cached path does not reproduce the model ({gap})"
    proba_pool, emb_pool = score_pool(model, [r["text"] for r in pool])
    start_state = top.state()
    print(
        f"pool {len(pool)}, eval {len(ev)}, replay {len(replay)}; cache {time.time() - t0:.0f}s; cached-path gap {gap:.1e}",
        flush=True,
    )

    results = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "pool": len(pool),
        "eval": len(ev),
        "start": score(y_ev, base_ev),
        "runs": [],
    }
    sizes = [len(pool) if s == "all" else int(s) for s in args.sizes.split(",")]
    for seed in range(args.seeds):
        plans = [("replay only", 0, [])]
        for n in sizes:
            strategies = ["all"] if n >= len(pool) else ["active", "random"]
            for strategy in strategies:
                if strategy == "all":
                    picks = list(range(len(pool)))
                else:
                    chosen = select(pool, n, "uncertainty" if strategy == "active" else "random", proba_pool, emb_pool, seed=seed)
                    picks = [p["index"] for p in chosen]
                plans.append((strategy, n, picks))
        for strategy, n, picks in plans:
            t = time.time()
            top.restore(start_state)
            top.fit(
                [c_pool[i] for i in picks] + c_replay,
                np.concatenate([y_pool[picks], y_replay]).astype(int),
                seed,
                args.epochs,
                args.lr,
                args.head_lr,
            )
            s = score(y_ev, top.proba(c_ev))
            added = np.bincount(y_pool[picks], minlength=3).tolist() if picks else [0, 0, 0]
            results["runs"].append(
                {"seed": seed, "strategy": strategy, "n": n, "added_per_label": added, **s, "seconds": time.time() - t}
            )
            print(
                f"seed {seed} {strategy:>11} n={n:>3}: macro-F1 {s['macro_f1']:.3f} ({s['ci_low']:.3f}-{s['ci_high']:.3f}) "
                f"added c/n/h {added} {time.time() - t:.0f}s",
                flush=True,
            )
            results["wall_s"], results["cpu_s"] = time.time() - t0, time.process_time() - cpu0
            tmp_out = args.output.with_suffix(".tmp")
            tmp_out.write_text(json.dumps(results, indent=1))
            os.replace(tmp_out, args.output)
    print_table(results)


def print_table(results: dict) -> None:
    from collections import defaultdict

    st = results["start"]
    print(
        f"\nstarting model on the evaluation part ({results['eval']} rows): macro-F1 {st['macro_f1']:.3f} "
        f"({st['ci_low']:.3f}-{st['ci_high']:.3f}), hostile recall {st['recall_hostile']:.2f}"
    )
    groups = defaultdict(list)
    for r in results["runs"]:
        groups[(r["n"], r["strategy"])].append(r)
    print(
        "\n| pool labels added | strategy | real-text macro-F1 (mean over seeds) | sd | mean bootstrap 95% CI | hostile recall | seeds |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    for (n, strategy), rs in sorted(groups.items()):
        f = np.array([r["macro_f1"] for r in rs])
        lo, hi = np.mean([r["ci_low"] for r in rs]), np.mean([r["ci_high"] for r in rs])
        rec = np.mean([r["recall_hostile"] for r in rs])
        print(
            f"| {n} | {strategy} | {f.mean():.3f} | {f.std(ddof=1) if len(f) > 1 else 0:.3f} | {lo:.3f}-{hi:.3f} | {rec:.2f} | {len(f)} |"
        )
    print(f"\nwall {results['wall_s']:.0f}s, CPU {results['cpu_s']:.0f}s (this process)")


if __name__ == "__main__":
    main()
