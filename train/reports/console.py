"""What `stance train` prints: the rows a run uses (per split and per file, with the data digest), one line per epoch
as it ends, and a final table with intervals. Plain aligned text, readable in a terminal and in a log file alike."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from train.data import corpus_files, load_statements


def rows_per_file(paths: list[str], parts: dict) -> list[tuple[str, dict[str, int]]]:
    """(file, {split: rows of that file in the split}) for every corpus file, in file order: which files a run used,
    and how much of each (a file the filters emptied shows zeros)."""
    split_of = {i: name for name in ("train", "val", "eval") for i in parts[name]["id"]}
    out = []
    for f in corpus_files(paths)[0]:
        ids = load_statements([f], validate=False)["id"]
        counts = {name: 0 for name in ("train", "val", "eval")}
        for i in ids:
            if i in split_of:
                counts[split_of[i]] += 1
        out.append((_shown(f), counts))
    return out


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def data_summary(parts: dict, per_file: list[tuple[str, dict[str, int]]], digest: str, eval_name: str = "eval") -> str:
    """The rows a run uses: per split, per file, and the data digest that tells two runs on different rows apart."""
    n = {k: len(parts[k]) for k in ("train", "val", "eval")}
    lines = [f"data {digest}: train {n['train']}, val {n['val']}, {eval_name} {n['eval']} rows"]
    used = [(f, c) for f, c in per_file if any(c.values())]
    width = max([len(f) for f, _ in used] + [4])
    lines.append(f"  {'file':<{width}}  {'train':>6} {'val':>6} {'eval':>6}")
    for f, c in used:
        lines.append(f"  {f:<{width}}  {c['train']:>6} {c['val']:>6} {c['eval']:>6}")
    if len(used) < len(per_file):
        lines.append(f"  ({len(per_file) - len(used)} more file(s) with no selected rows)")
    return "\n".join(lines) + "\n"


class EpochTable:
    """Prints one row per epoch as it ends (epoch, train loss, val loss, val macro-F1, val accuracy, seconds), from the
    metrics the estimators report to the fit context (train_loss and the val_* metrics arrive in separate calls)."""

    HEADER = f"{'epoch':>5}  {'train_loss':>10}  {'val_loss':>8}  {'val_macro_f1':>12}  {'val_acc':>7}  {'seconds':>7}"

    def __init__(self, expects_val: bool, out=None):
        self.expects_val = expects_val
        self.out = out or sys.stdout
        self.pending: dict[int, dict] = {}
        self.started = self.last = time.time()
        self.printed_header = False

    def __call__(self, metrics: dict[str, float], step: int | None = None) -> None:
        row = self.pending.setdefault(step or 0, {})
        row.update(metrics)
        if "val_macro_f1" in row or not self.expects_val:
            self._print(step or 0, self.pending.pop(step or 0))

    def _print(self, step: int, m: dict) -> None:
        if not self.printed_header:
            print(self.HEADER, file=self.out)
            self.printed_header = True
        now = time.time()

        def cell(key, width, digits=4):
            return f"{m[key]:>{width}.{digits}f}" if key in m else f"{'-':>{width}}"

        print(
            f"{step:>5}  {cell('train_loss', 10)}  {cell('val_loss', 8)}  {cell('val_macro_f1', 12)}  "
            f"{cell('val_accuracy', 7)}  {now - self.last:>7.1f}",
            file=self.out,
            flush=True,
        )
        self.last = now

    def flush(self) -> None:
        for step in sorted(self.pending):
            self._print(step, self.pending.pop(step))


def results_table(sets: dict[str, tuple[int, dict]]) -> str:
    """The final metrics of each evaluation set: rows, macro-F1 with its 95% bootstrap interval, accuracy, ECE."""
    width = max([len(k) for k in sets] + [3])
    lines = [f"{'set':<{width}}  {'rows':>5}  {'macro_f1':>8}  {'95% CI':>11}  {'accuracy':>8}  {'ece':>5}"]
    for name, (rows, m) in sets.items():
        ci = f"{m['macro_f1_ci_low']:.3f}-{m['macro_f1_ci_high']:.3f}" if "macro_f1_ci_low" in m else ""
        lines.append(
            f"{name:<{width}}  {rows:>5}  {m['macro_f1']:>8.4f}  {ci:>11}  {m.get('accuracy', float('nan')):>8.4f}  "
            f"{m.get('ece', float('nan')):>5.3f}"
        )
    return "\n".join(lines) + "\n"
