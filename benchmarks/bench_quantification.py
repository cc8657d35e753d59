"""Does the correction of `stance analyze` work? Naive counting vs quapy's corrections on collections of known mix.

Labeled rows scored by one model (the exact probabilities its run logged: `eval/scored.parquet`, the authored test
split, and `realquotes_dev/scored.parquet`, the real statements of ../shared/external/realquotes-dev, read from the
run's artifacts, never copied) are drawn into many synthetic collections with known label mixes (neutral 10-80%,
the rest split at random between conciliatory and hostile), and each collection's shares are estimated as analyze
does (train.findings: the same Correction and estimate_group). Reported per setting and method: the mean absolute
error of the shares (over classes and collections), the same for collections >= 50% neutral, and how often the 95%
interval holds the collection's true share.

Settings (where the correction is fitted -> what the collections are drawn from):
  authored, halves         half of the test split (stratified)      -> the other half
  authored, resampled      n/2 rows drawn from the test split       -> the whole test split
  real, fit on authored    the whole authored test split            -> the real statements   (analyze's default)
  real, halves             half of the real statements (stratified) -> the other half        (analyze --validation)
  real, resampled          n/2 rows drawn from the real statements  -> all real statements   (analyze --validation)
The halves and resampled settings are repeated over --splits random draws. "halves" is harsher than a researcher's
situation: a collection of 500 drawn from ~160 rows repeats each row three times, so its errors are those of a few
rows that differ from the fitting half's, a mismatch no resampling of the collection can see. "resampled" treats the
labeled rows as the population, so that the fitted rows and the collection are independent draws from one
population, which is what a random labeled sample of one's own collection is.

    STANCE_MLRUNS=/work/main/mlruns python benchmarks/bench_quantification.py --run 87f278a5afc24b0f87fc0b43668bccfe
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("cc", "pcc", "acc", "pacc", "emq")
SETTINGS = ("authored-halves", "authored-resampled", "real-authored", "real-halves", "real-resampled")


def load(run: str, artifact: str, tmp: Path):
    import pandas as pd

    from train.findings.analyze import validation_arrays
    from train.tracking.analysis_runs import evaluation_rows

    path, _ = evaluation_rows(f"runs:/{run}/model", tmp / artifact.replace("/", "_"), artifact)
    return validation_arrays(pd.read_parquet(path), path)


def halves(y, rng):
    """A random stratified half split: (first, second) index arrays."""
    a, b = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a += list(idx[: len(idx) // 2])
        b += list(idx[len(idx) // 2 :])
    return np.array(a), np.array(b)


def draw(y, size, rng):
    """Indices of a collection of `size` rows with neutral 10-80% and a random conciliatory/hostile split."""
    neutral = rng.uniform(0.10, 0.80)
    conc = rng.uniform(0, 1) * (1 - neutral)
    mix = np.array([conc, neutral, 1 - neutral - conc])  # LABELS order: conciliatory, neutral, hostile
    counts = rng.multinomial(size, mix)
    return np.concatenate([rng.choice(np.flatnonzero(y == c), k, replace=True) for c, k in enumerate(counts)])


def run_setting(name, fit_p, fit_y, pool_p, pool_y, args, rng, results):
    from train.findings.quantify import Correction, estimate_group

    corrs = {m: Correction(m, name, fit_p, fit_y, n_boot=args.n_boot, seed=int(rng.integers(1 << 30))) for m in METHODS}
    for _ in range(args.collections):
        idx = draw(pool_y, args.size, rng)
        truth = np.bincount(pool_y[idx], minlength=3) / len(idx)
        for m, corr in corrs.items():
            est = estimate_group(corr, pool_p[idx], seed=int(rng.integers(1 << 30)))
            shares = est.naive if m == "cc" else est.share
            results.append(
                (name, m, np.abs(shares - truth).mean(), truth[1] >= 0.5, ((est.low <= truth) & (truth <= est.high)).mean())
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="87f278a5afc24b0f87fc0b43668bccfe", help="the model's run (has the scored artifacts)")
    ap.add_argument("--collections", type=int, default=100, help="collections per setting (per split for real/real)")
    ap.add_argument("--size", type=int, default=500, help="statements per collection")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--splits", type=int, default=3, help="random draws of the fitted rows per halves/resampled setting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated subset of " + ", ".join(SETTINGS))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        test_p, test_y = load(args.run, "eval/scored.parquet", Path(tmp))
        real_p, real_y = load(args.run, "realquotes_dev/scored.parquet", Path(tmp))
    results: list[tuple] = []
    n_test, n_real = len(test_y), len(real_y)
    want = set(args.settings.split(","))
    for _ in range(args.splits if "authored-halves" in want else 0):
        a, b = halves(test_y, rng)
        run_setting("authored, halves", test_p[a], test_y[a], test_p[b], test_y[b], args, rng, results)
    for _ in range(args.splits if "authored-resampled" in want else 0):
        a = rng.choice(n_test, n_test // 2)
        run_setting("authored, resampled", test_p[a], test_y[a], test_p, test_y, args, rng, results)
    if "real-authored" in want:
        run_setting("real, fit on authored", test_p, test_y, real_p, real_y, args, rng, results)
    for _ in range(args.splits if "real-halves" in want else 0):
        a, b = halves(real_y, rng)
        run_setting("real, halves", real_p[a], real_y[a], real_p[b], real_y[b], args, rng, results)
    for _ in range(args.splits if "real-resampled" in want else 0):
        a = rng.choice(n_real, n_real // 2)
        run_setting("real, resampled", real_p[a], real_y[a], real_p, real_y, args, rng, results)
    import pandas as pd

    df = pd.DataFrame(results, columns=["setting", "method", "mae", "mostly_neutral", "covered"])
    print(
        f"run {args.run}: test split {len(test_y)} rows, real statements {len(real_y)} rows; "
        f"{args.collections} collections of {args.size} per fit ({args.splits} fits per halves/resampled setting), neutral 10-80%, {args.n_boot} bootstrap replicates; "
        f"{time.time() - t0:.0f} s\n"
    )
    print("| setting (fit -> collections) | method | MAE of shares | MAE, >= 50% neutral | 95% CI coverage |")
    print("|---|---|---:|---:|---:|")
    for setting in dict.fromkeys(df["setting"]):
        naive = df[(df.setting == setting) & (df.method == "cc")]["mae"].mean()
        for m in METHODS:
            s = df[(df.setting == setting) & (df.method == m)]
            cov = "" if m == "cc" else f"{s['covered'].mean():.1%}"
            ratio = "" if m == "cc" else f" ({s['mae'].mean() / naive:.2f}x naive)"
            name = "naive (count predicted labels)" if m == "cc" else m
            print(f"| {setting} | {name} | {s['mae'].mean():.3f}{ratio} | {s[s.mostly_neutral]['mae'].mean():.3f} | {cov} |")


if __name__ == "__main__":
    main()
