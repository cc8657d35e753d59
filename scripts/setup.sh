#!/usr/bin/env bash
# Create .venv and install the project with the CPU build of torch. Idempotent; safe to re-run.
# Why two steps: `pip install torch==2.13.0` takes the local CPU build, and every later install is held to that
# pin by .ci/constraints.txt; any looser torch spec would pull several GB of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# A venv copied or moved with the project still runs from (and installs into) its old folder: its scripts' shebangs
# and the editable install name the old path. Recreate it here.
if [ -f .venv/bin/pip ] && [[ "$(head -1 .venv/bin/pip)" != "#!$PWD/.venv/bin/"* ]]; then
  echo "setup: .venv was made in another folder ($(head -1 .venv/bin/pip | sed 's/^#!//; s|/bin/python.*||')): recreating it in $PWD/.venv"
  rm -rf .venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
  || python -m pip install -q torch==2.13.0
python -m pip install -q -c .ci/constraints.txt -e ".[test,notebooks]"
echo "setup: $(python -c 'import torch, transformers, mlflow; print("torch", torch.__version__, "| transformers", transformers.__version__, "| mlflow", mlflow.__version__)')"
