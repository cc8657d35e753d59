"""Log the at-a-glance summary (`f1/<language>`, `n_eval`; see docs/ui.md) for finished runs made before runs logged
it, computed from each run's logged scored rows: how docs/ui-runs.png was made from the project's older runs.

    mkdir -p /tmp/ui/mlruns && cp mlruns/mlflow.db /tmp/ui/mlruns/      # work on a copy: this writes metrics
    STANCE_MLRUNS=/tmp/ui/mlruns stance runs relocate                    # the copy lives in another folder
    STANCE_MLRUNS=/tmp/ui/mlruns python benchmarks/ui_backfill_summary.py --artifacts mlruns/artifacts
    STANCE_MLRUNS=/tmp/ui/mlruns python benchmarks/ui_screenshot.py --width 1600 --height 640
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="stance-ru-az-2025")
    ap.add_argument("--artifacts", type=Path, required=True, help="the original store's artifacts/ folder (read only)")
    args = ap.parse_args(argv)

    import pandas as pd
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    from train.metrics import macro_f1_by_group, metric_key
    from train.schema import LABELS
    from train.tracking import setup_tracking

    setup_tracking()
    client = MlflowClient()
    exp = client.get_experiment_by_name(args.experiment)
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'FINISHED'"):
        rid = run.info.run_id
        for folder in run.data.tags.get("stance.eval_sets", "eval").split(","):
            scored = next(args.artifacts.glob(f"**/{rid}/artifacts/{folder}/scored.parquet"), None)
            if scored is None:
                print(f"{rid[:8]} {folder}: no scored rows, skipped")
                continue
            rows = pd.read_parquet(scored)
            pred = rows[[f"prob_{label}" for label in LABELS]].to_numpy().argmax(1)
            groups = macro_f1_by_group(rows["stance"].map(LABELS.index).to_numpy(), pred, rows["language"].to_numpy())
            values = {metric_key(folder, f"f1/{g['group']}"): round(g["macro_f1"], 3) for g in groups}
            values[metric_key(folder, "f1/ci_low")] = round(groups[-1]["ci_low"], 3)
            values[metric_key(folder, "f1/ci_high")] = round(groups[-1]["ci_high"], 3)
            now = int(time.time() * 1000)
            client.log_batch(rid, metrics=[Metric(k, v, now, 0) for k, v in values.items()])
            client.set_tag(rid, metric_key(folder, "n_eval"), " · ".join(f"{g['group']} {g['n']}" for g in groups))
            print(f"{rid[:8]} {run.info.run_name} {folder}: f1/all {values[metric_key(folder, 'f1/all')]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
