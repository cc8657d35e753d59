# On the device: bash .gpu/small/tune.sh MINUTES   (carry .whl, .gpu/small, .gpu/e5p/*)
set -o pipefail
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false STANCE_MLRUNS=/tmp/mlruns
T0=$(date +%s); t(){ echo "[t+$(( $(date +%s) - T0 ))s] $*" | tee -a $OUT/steps.txt; }
t start
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl .gpu/small/whl/*.whl > $OUT/pip.txt 2>&1 || { t "pip failed"; exit 2; }
export PYTHONPATH=/tmp/site:$PWD
t installed
python3 .gpu/small/assemble.py >> $OUT/steps.txt 2>&1 || { t "assemble failed"; exit 3; }
nvidia-smi --query-gpu=name,memory.total --format=csv >> $OUT/steps.txt
t assembled
python3 -m train.cli tune configs/tune-realdev-gpu.yaml --no-bootstrap-model data.eval_files=[.gpu/small/realdev/realquotes_dev.jsonl] tune.timeout_minutes=$1 train.threads=8 > $OUT/tune.log 2>&1; t "tune rc=$?"
python3 - <<'PY' > $OUT/trials.csv 2>>$OUT/steps.txt
import optuna, sys
s = optuna.load_study(study_name=None, storage="sqlite:////tmp/mlruns/optuna.db") if False else None
st = optuna.get_all_study_summaries("sqlite:////tmp/mlruns/optuna.db")
study = optuna.load_study(study_name=st[0].study_name, storage="sqlite:////tmp/mlruns/optuna.db")
df = study.trials_dataframe()
df.to_csv(sys.stdout, index=False)
PY
python3 - <<'PY' > $OUT/runs.csv 2>>$OUT/steps.txt
import mlflow, sys
mlflow.set_tracking_uri("sqlite:////tmp/mlruns/mlflow.db")
df = mlflow.search_runs(search_all_experiments=True)
cols = [c for c in df.columns if c.startswith(("metrics.", "params.")) or c in ("run_id", "status", "start_time", "end_time")]
df[cols].to_csv(sys.stdout, index=False)
PY
t end
