#!/usr/bin/env bash
# The README's main run (scripts/quickstart.sh without the install) at each given commit, back
# to back in fresh clones on this machine, with the project's .venv: total seconds, the cache
# and training-loop lines of the log, and whether the trained weights (last.pt), the validation
# history and the test metrics equal the first commit's. A baseline and a change measured in
# the same command:
#   bash bench/readme_run.sh 7024c61 HEAD | tee bench/results/readme_run.txt
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="$repo/.venv/bin"
work="$(mktemp -d)"
first=""
for commit in "$@"; do
  dir="$work/$commit"
  git clone -q "$repo" "$dir"
  (
    cd "$dir"
    git checkout -q "$commit"
    source scripts/env.sh
    export PYTHONPATH="$PWD"
    start=$(date +%s)
    "$venv/lerenet" data synth --out data-sources/synthetic >synth.log 2>&1
    "$venv/lerenet-pipeline" retrain --source data-sources/synthetic >run.log 2>&1
    echo "$commit ($(git rev-parse --short HEAD)): $(($(date +%s) - start)) s"
    grep -h 'caching backbone\|feature cache built\|training loop' run.log | sed 's/^.* - /  /'
  )
  if [ -z "$first" ]; then
    first="$dir"
  else
    "$venv/python" - "$first" "$dir" <<'PY'
import json, sys, torch
from pathlib import Path
first, this = (Path(p) / "outputs" for p in sys.argv[1:])
a, b = (torch.load(d / "train" / "last.pt", weights_only=False)["model"] for d in (first, this))
print("  trained weights equal the first commit's:", all(torch.equal(a[k], b[k]) for k in a))
def scores(path):  # without what names the run (its MLflow run and model ids)
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k not in ("run_id", "model_uri")} if isinstance(data, dict) else data
for name in ("train/history.json", "eval/metrics.json"):  # validation rounds, test scores
    if (first / name).exists() and (this / name).exists():
        same = scores(first / name) == scores(this / name)
        print(f"  {name} equals the first commit's:", same)
PY
  fi
done
rm -rf "$work"
