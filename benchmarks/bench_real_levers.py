"""Post-training levers on real statements, side by side in one run: temperature scaling and class-prior shift.

Loads one trained model (a run id, an MLflow URI or a model directory), takes its raw class probabilities on the
real-statement dev set (../shared/external/realquotes-dev, read in place, never copied) and on the run's own
validation rows, and scores each variant on the dev set: macro-F1 with a bootstrap interval, per core language,
hostile recall, neutral statements called conciliatory, and ECE. The temperature is fitted on the validation split
(never on the dev set); priors are fixed numbers, not fitted to the dev set's mix (its README: 48% neutral by
construction, real collections ~70%).

    python benchmarks/bench_real_levers.py --model runs:/<run_id>/model
    python benchmarks/bench_real_levers.py --model models:/stance-classifier/1 --markdown
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="run id, runs:/ID/model, models:/NAME/N or a model directory")
    ap.add_argument("--dev", default=str(DEV))
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument(
        "--config",
        default="configs/default.yaml",
        help="the model's training config: its validation split "
        "fits the temperature when the model was trained without calibration",
    )
    args = ap.parse_args()

    import re

    from train.data import load_statements
    from train.models import adjust_proba, fit_temperature
    from train.schema import LABELS
    from train.tracking.registry import load_for_predict

    spec = f"runs:/{args.model}/model" if re.fullmatch(r"[0-9a-f]{32}", args.model) else args.model
    with tempfile.TemporaryDirectory() as tmp:
        model, uri, _, _, _ = load_for_predict(spec, Path(tmp))
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
    # What a labeled sample of real text buys (data.calibration_file): 2-fold cross-fitting on the dev set, each half's
    # temperature fitted on the other half, so no row is scored by a temperature fitted on itself.
    half = np.random.default_rng(0).permutation(len(y)) % 2 == 0
    crossed = np.empty_like(raw)
    temps = []
    for fit_rows in (half, ~half):
        t = fit_temperature(raw[fit_rows], y[fit_rows])
        temps.append(t)
        crossed[~fit_rows] = adjust_proba(raw[~fit_rows], t)
    rows.append(
        {
            "calibration": f"temperature {temps[0]:.2f}/{temps[1]:.2f} (fitted on the other half of dev, 2-fold)",
            "prior": "as trained (uniform)",
            **score(y, crossed, dev["language"].tolist()),
        }
    )
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


if __name__ == "__main__":
    main()
