#!/usr/bin/env bash
# A short check of bench/quality.py's whole path on a lent GPU before a long run spends the
# device budget: the classes staged so far (bench/gpu_data.sh, any subset of defects9 with its
# manifest) → a subset manifest → the quick protocol's fold 0 with a few training steps, every
# model scored on novel and seen classes. Prints each phase's time (train_s, eval_s), which
# sizes the long run. Its results file is thrown away: this measures nothing.
#   bash bench/gpu_smoke.sh [extra bench/quality.py arguments]   (SMOKE_STEPS: 10)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
src="${DEFECTS9:-/tmp/gpudata/defects9}"
[ -f "$src/manifest.csv" ] || { echo "no staged defects9 manifest at $src" >&2; exit 2; }
smoke="$(mktemp -d)"
cp -al "$src/images" "$smoke/images"  # hard links: ingest skips symbolic links
cp -al "$src/masks" "$smoke/masks"
# the rows whose image and mask are staged
python3 - "$src" "$smoke" <<'PY'
import csv, sys
from pathlib import Path
src, out = Path(sys.argv[1]), Path(sys.argv[2])
with open(src / "manifest.csv", newline="") as f:
    reader = csv.DictReader(f)
    rows = [r for r in reader if (src / r["image"]).exists() and (src / r["mask"]).exists()]
    fields = reader.fieldnames
with open(out / "manifest.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
print(f"smoke data: {len(rows)} pairs of {len({r['class'] for r in rows})} classes")
PY
device=cuda
python3 -c "import torch; assert torch.cuda.is_available()" 2>/dev/null || device=cpu
python3 bench/quality.py --protocol quick --device "$device" --data "$smoke" --folds 0 \
  --steps "${SMOKE_STEPS:-10}" --workers "$GPU_WORKERS" --tag gpu_smoke --no-docs \
  --work "$smoke/work" "$@"
python3 - <<'PY'
import json
r = json.load(open("bench/results/gpu_smoke.json"))["folds"]["0"]["lerenet"]
print(f"smoke: train_s {r['train_s']}, eval_s {r['eval_s']}, best_step {r['best_step']}")
PY
rm -f bench/results/gpu_smoke.json
