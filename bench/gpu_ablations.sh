#!/usr/bin/env bash
# The diagnosis variants (bench/ablations.py, quick protocol) on a lent GPU machine: the same
# 600 steps × 2 episodes as on the CPU, only faster. → bench/results/q_*.json (+ $OUT when set)
#   ABLATIONS_ONLY="q_default q_start" bash bench/gpu_ablations.sh   # these, in this order
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
data="${DEFECTS9:-.gpudata/defects9}"
[ -f "$data/manifest.csv" ] || { echo "no defects9 at $data" >&2; exit 2; }
# shellcheck disable=SC2086
python3 bench/ablations.py ${ABLATIONS_ONLY:+--only $ABLATIONS_ONLY} --run --device cuda --data "$data" --workers "$GPU_WORKERS" "$@" &
copy_out $! "q_*.json"
