#!/usr/bin/env bash
# Regenerate .ci/constraints.txt from the current .venv after a deliberate upgrade (then re-measure the README figures).
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
{ sed -n '1,3p' .ci/constraints.txt; pip freeze --exclude-editable | grep -v '^-e' | sed -E 's/^torch==([0-9.]+)\+cpu$/torch==\1/'; } > .ci/constraints.txt.new
mv .ci/constraints.txt.new .ci/constraints.txt
echo "wrote .ci/constraints.txt ($(grep -c '==' .ci/constraints.txt) pins)"
