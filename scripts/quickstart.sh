#!/usr/bin/env bash
# The main job end to end on the embedded defaults: install, get the offline encoder, validate the corpus,
# train the default transformer and the baseline (both tracked in mlruns/), and print the leaderboard.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
stance models bootstrap
stance data validate
stance train configs/default.yaml
stance train configs/baseline.yaml
stance runs compare
echo "Open the runs in the MLflow UI with: . .venv/bin/activate && stance ui"
