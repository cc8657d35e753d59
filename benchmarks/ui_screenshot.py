"""Screenshot of the MLflow UI's runs table (metrics view, sorted by macro-F1) for the project's store.

    python benchmarks/ui_screenshot.py                                   # default store mlruns/ -> docs/ui-runs.png
    STANCE_MLRUNS=/tmp/demo/mlruns python benchmarks/ui_screenshot.py --experiment stance-demo --out /tmp/ui.png

Starts `stance ui` on a free port, saves the metrics view (see train.tracking.server.metrics_view), lets headless Chromium render
the page and stops the server. Needs Chromium (Debian: apt-get install -y chromium).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default="stance-ru-az-2025")
    ap.add_argument("--metric", default="f1/all", help="sort the table by this metric")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ui-runs.png")
    ap.add_argument("--width", type=int, default=2200)
    ap.add_argument("--height", type=int, default=900)
    args = ap.parse_args(argv)

    import mlflow

    from train.reports.browser import find_chromium, screenshot
    from train.tracking import setup_tracking
    from train.tracking.server import UIError, experiment_runs_url, metrics_view, running_ui

    if find_chromium() is None:
        print("error: chromium is not installed (apt-get install -y chromium)", file=sys.stderr)
        return 2
    uri = setup_tracking()
    exp = mlflow.get_experiment_by_name(args.experiment)
    if exp is None:
        print(f"error: no experiment {args.experiment!r} in {uri}", file=sys.stderr)
        return 1
    n = len(mlflow.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'"))
    if n == 0:
        print(f"error: experiment {args.experiment!r} in {uri} has no finished runs", file=sys.stderr)
        return 1
    key = metrics_view(exp.experiment_id, args.metric)
    try:
        with running_ui() as url:
            page = experiment_runs_url(url, exp.experiment_id, key)
            out = screenshot(page, args.out, window=(args.width, args.height))
    except UIError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{out}: runs table of {args.experiment!r} ({n} finished runs) from {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
