#!/usr/bin/env bash
# #13 item 5 on a lent GPU machine: bench/worker_throughput.py there, with the services started
# on that machine (SeaweedFS, MLflow server, Prefect server and workers) and the GPU image's
# entrypoint, `prefect worker start --pool lerenet-gpu`, training the nightly retrain's model.
#   bash bench/gpu_worker.sh [worker_throughput.py args]
#     → bench/results/worker_throughput_cuda.json (and $OUT when set)
# Needs the stack's wheels and the fixture staged in $GPU_DATA (/tmp/gpudata) by
# bench/gpu_data.sh in three calls (its header). They go into a virtual environment that sees
# the image's own packages (CUDA torch among them); lerenet is this checkout, installed
# editable. Budget: 400 steps × 8 one-shot episodes at 320×320 by default, about 4 minutes of
# training on an H100 at the 95 episodes/s of the quality run, inside one 10-minute call.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${GPU_DATA:-/tmp/gpudata}"
venv="${GPU_VENV:-/tmp/stack-venv}"
export PYTHONUNBUFFERED=1
[ -d "$data/fixture" ] || { echo "no fixture at $data/fixture: bench/gpu_data.sh" >&2; exit 2; }
if [ ! -x "$venv/bin/prefect" ]; then
  python3 -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install -q --no-index --no-deps --no-compile "$data"/wheels/part*/*.whl
  "$venv/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e .
fi
# what the stack runs on there: the image's torch, numpy and pandas under the carried services
"$venv/bin/python" -c '
import numpy, pandas, torch
import dvc, great_expectations, mlflow, prefect
print("torch", torch.__version__, torch.cuda.get_device_name(0), "| numpy", numpy.__version__,
      "| pandas", pandas.__version__, "| prefect", prefect.__version__, "| mlflow", mlflow.__version__)
'
. scripts/env.sh  # offline: no telemetry, no update checks
"$venv/bin/python" bench/worker_throughput.py --source "$data/fixture" "$@"
