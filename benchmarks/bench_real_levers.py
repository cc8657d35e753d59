"""Post-training levers on real statements, side by side in one run: temperature scaling, class-prior shift,
class-balanced bias calibration and an ensemble with a second model.

Loads one trained model (a run id, an MLflow URI or a model directory), takes its raw class probabilities on the
real-statement dev set (../shared/external/realquotes-dev, read in place, never copied) and on the run's own
validation rows, and scores each variant on the dev set: macro-F1 with a bootstrap interval, per core language,
hostile recall, neutral statements called conciliatory, and ECE. The temperature is fitted on the validation split
(never on the dev set); priors are fixed numbers, not fitted to the dev set's mix (its README: 48% neutral by
construction, real collections ~70%).

The levers that a labeled sample of real text buys (temperature, temperature + class biases) are cross-fitted: the dev
set is split in two halves at random, each half is scored with what was fitted on the other half, so no row is scored
by something fitted on itself. The class biases are fitted on a class-balanced log-likelihood (each class weighs the
same), so they correct the model's systematic confusions, not the dev set's label mix. The ensemble (--with MODEL,
e.g. the TF-IDF baseline's run) averages the two models' probabilities with equal weights: nothing is fitted.

    python benchmarks/bench_real_levers.py --model runs:/<run_id>/model
    python benchmarks/bench_real_levers.py --model models:/stance-classifier/1 --markdown
    python benchmarks/bench_real_levers.py --model models:/stance-classifier/1 --with models:/stance-baseline/1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEV = REPO.parent / "shared" / "external" / "realquotes-dev" / "realquotes_dev.jsonl"
CORE = ("en", "ru", "tr", "az", "uk")
PRIORS = {"as trained (uniform)": None, "prior 25/50/25": [0.25, 0.5, 0.25], "prior 15/70/15": [0.15, 0.7, 0.15]}


def score(y, proba, langs) -> dict:
    from train.metrics import evaluation_metrics
    from train.schema import LABELS

    m = evaluation_metrics(y, proba, langs)
    pred = proba.argmax(1)
    n, c, h = (LABELS.index(x) for x in ("neutral", "conciliatory", "hostile"))
    out = {
        "macro_f1": m["macro_f1"],
        "ci": f"{m['macro_f1_ci_low']:.3f}-{m['macro_f1_ci_high']:.3f}",
        "ece": m["ece"],
        "hostile_found": f"{int(((pred == h) & (y == h)).sum())}/{int((y == h).sum())}",
        "neutral_as_conc": f"{int(((pred == c) & (y == n)).sum())}/{int((y == n).sum())}",
    }
    out.update({lang: m.get(f"macro_f1_lang_{lang}", float("nan")) for lang in CORE})
    return out


def cross_fit(raw: np.ndarray, y: np.ndarray, fit, apply) -> tuple[np.ndarray, list]:
    """2-fold cross-fitting on the dev set (fixed random halves): each half is adjusted by what `fit` learned on the
    other half."""
    half = np.random.default_rng(0).permutation(len(y)) % 2 == 0
    out = np.empty(raw.shape, dtype=np.float64)
    fitted = []
    for fit_rows in (half, ~half):
        params = fit(raw[fit_rows], y[fit_rows])
        fitted.append(params)
        out[~fit_rows] = apply(raw[~fit_rows], params)
    return out, fitted


def load_model(spec: str):

    from train.tracking.registry import load_for_predict

    with tempfile.TemporaryDirectory() as tmp:
        model, uri, _, _, _ = load_for_predict(spec, Path(tmp))
    return model, uri


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run id, runs:/ID/model, models:/NAME/N or a model directory")
    ap.add_argument("--with", dest="other", help="a second model (e.g. the baseline's run): adds the ensemble rows")
    ap.add_argument("--dev", default=str(DEV))
    ap.add_argument(
        "--curve", type=int, nargs="*", default=[30, 60, 100, 164], help="labeled-row counts for the class-bias curve"
    )
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--config",
        default="configs/default.yaml",
        help="the model's training config: its validation split "
        "fits the temperature when the model was trained without calibration",
    )
    args = ap.parse_args()

    from train.data import load_statements
    from train.models import adjust_proba, fit_class_bias, fit_temperature
    from train.schema import LABELS

    def with_bias(p, fitted):
        return adjust_proba(p, fitted[0], bias=fitted[1])

    model, uri = load_model(args.model)
    dev = load_statements([args.dev])
    y = dev["stance"].map(LABELS.index).to_numpy()
    raw = model._raw_proba(dev["text"].tolist(), 64)
    val_t = model.temperature  # fitted on the run's validation split by `stance train` (1.0 if calibration was off)
    if val_t == 1.0 and args.config:  # a model trained without calibration: fit it here, on the same validation split
        from train.config import load_config
        from train.data import prepare_data

        _, parts = prepare_data(load_config(args.config))
        val_t = fit_temperature(
            model._raw_proba(parts["val"]["text"].tolist(), 64), parts["val"]["stance"].map(LABELS.index).to_numpy()
        )
    rows = []
    for t_name, t in (("no calibration", 1.0), (f"temperature {val_t:.2f} (val split)", val_t)):
        for p_name, prior in PRIORS.items():
            proba = adjust_proba(raw, t, prior, model.train_prior)
            rows.append({"calibration": t_name, "prior": p_name, **score(y, proba, dev["language"].tolist())})
    # What a labeled sample of real text buys (data.calibration_file), cross-fitted on the dev set.
    langs = dev["language"].tolist()
    crossed, temps = cross_fit(raw, y, fit_temperature, adjust_proba)
    rows.append(
        {
            "calibration": f"temperature {temps[0]:.2f}/{temps[1]:.2f} (fitted on the other half of dev, 2-fold)",
            "prior": "as trained (uniform)",
            **score(y, crossed, langs),
        }
    )
    crossed, fitted = cross_fit(raw, y, fit_class_bias, with_bias)
    shown = "/".join(f"T {t:.2f} b " + ",".join(f"{v:+.2f}" for v in b[1:]) for t, b in fitted)
    rows.append(
        {
            "calibration": f"temperature + class biases, balanced NLL, other half of dev, 2-fold ({shown}; "
            f"biases of {', '.join(LABELS[1:])} vs {LABELS[0]})",
            "prior": "as trained (uniform)",
            **score(y, crossed, langs),
        }
    )
    if args.other:
        other, other_uri = load_model(args.other)
        mixed = (raw + other._raw_proba(dev["text"].tolist(), 64)) / 2
        rows.append(
            {"calibration": f"ensemble: mean with {other_uri}", "prior": "as trained (uniform)", **score(y, mixed, langs)}
        )
        crossed, fitted = cross_fit(mixed, y, fit_class_bias, with_bias)
        rows.append(
            {
                "calibration": "ensemble + temperature and class biases (balanced NLL, 2-fold on dev)",
                "prior": "as trained (uniform)",
                **score(y, crossed, langs),
            }
        )
    # How many labeled real statements the class biases need: fit on n random dev rows, score the remaining rows,
    # against the uncalibrated model on the same remaining rows (20 draws each).
    curve = []
    for n in args.curve:
        gains, f1s = [], []
        for draw in range(20):
            fit_rows = np.zeros(len(y), bool)
            fit_rows[np.random.default_rng(100 + draw).choice(len(y), n, replace=False)] = True
            if len(np.unique(y[fit_rows])) < len(LABELS):
                continue
            rest = ~fit_rows
            adjusted = with_bias(raw[rest], fit_class_bias(raw[fit_rows], y[fit_rows]))
            f1 = score(y[rest], adjusted, [langs[i] for i in np.flatnonzero(rest)])["macro_f1"]
            f1s.append(f1)
            gains.append(f1 - score(y[rest], raw[rest], [langs[i] for i in np.flatnonzero(rest)])["macro_f1"])
        curve.append((n, len(f1s), np.mean(f1s), np.std(f1s), np.mean(gains), np.min(gains), np.max(gains)))
    oracle_t = fit_temperature(raw, y)  # for reference only: what the dev set itself would choose
    rows.append(
        {
            "calibration": f"temperature {oracle_t:.2f} (fitted on dev: reference, not a lever)",
            "prior": "as trained (uniform)",
            **score(y, adjust_proba(raw, oracle_t), dev["language"].tolist()),
        }
    )
    cols = ["calibration", "prior", "macro_f1", "ci", *CORE, "hostile_found", "neutral_as_conc", "ece"]
    print(f"model {uri}; dev set {args.dev}: {len(dev)} rows")
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    if args.markdown:
        print("| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|")
        for r in rows:
            print("| " + " | ".join(fmt(r[c]) for c in cols) + " |")
    else:
        import pandas as pd

        print(pd.DataFrame(rows)[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if curve:
        print("\nclass biases fitted on n labeled dev rows, scored on the other rows (draws with all three labels):")
        print("    n  draws  macro_f1 (mean +- sd)  gain over uncalibrated: mean [min, max]")
        for n, k, mean, sd, gain, lo, hi in curve:
            print(f"{n:5d}  {k:5d}  {mean:.3f} +- {sd:.3f}           {gain:+.3f} [{lo:+.3f}, {hi:+.3f}]")


if __name__ == "__main__":
    main()
