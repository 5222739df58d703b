#!/usr/bin/env bash
# Stage defects9 on a lent GPU machine across calls: the device tool carries at most 64 MiB per
# call, and defects9 (50 MB) plus the wheels (25 MB) are more than that. Each call syncs the
# working tree again and drops ignored paths it does not carry, so a carried part is copied out
# of the repository, to $GPU_DATA (/tmp/defects9), where it stays while the machine is held.
#   call 1: carry the seven largest .gpudata/defects9/images/<Class> folders;
#           bash bench/gpu_data.sh
#   call 2 (at once: a machine idles 30 s before it goes back): carry .whl, the other two
#           image folders, masks, manifest.csv; bash bench/gpu_data.sh &&
#           DEFECTS9=/tmp/defects9 bash bench/gpu_quality.sh
# It exits 3 until every image the manifest names is there.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${GPU_DATA:-/tmp/defects9}"
mkdir -p "$dest"
cp -r .gpudata/defects9/. "$dest"/
[ -f "$dest/manifest.csv" ] || { echo "staged: no manifest.csv yet" >&2; exit 3; }
want=$(($(wc -l <"$dest/manifest.csv") - 1))
have=$(find "$dest/images" -name '*.png' | wc -l)
echo "staged $have of $want images in $dest"
[ "$have" -ge "$want" ] || exit 3
