#!/usr/bin/env bash
# Stage what a GPU benchmark needs on a lent GPU machine, across device calls. One call carries
# at most 64 MiB, and each call syncs the working tree again, dropping the ignored paths it does
# not carry: so every call copies what it carries of .gpudata/ out of the repository, to
# $GPU_DATA (/tmp/gpudata), where it stays while the machine is held. A machine idles 30 s
# before it goes back: make the calls one right after the other. `bash bench/gpu_data.sh WHAT`
# then exits 3 until WHAT (defects9 | wheels) is complete there.
#   quality (#15): defects9 (cp -r ../shared/datasets/defects9 .gpudata/; 58 MB) and .whl/:
#     call 1: carry the seven largest .gpudata/defects9/images/<Class> folders (BS_Pitting,
#             Steel_Patches, Steel_Inclusion, Steel_Scratches, MT_Uneven, MT_Blowhole, MT_Break);
#             bash bench/gpu_data.sh defects9
#     call 2: carry .whl, .gpudata/defects9/images/MT_Crack, …/MT_Fray, …/masks, …/manifest.csv;
#             bash bench/gpu_data.sh defects9 && bash bench/gpu_quality.sh
#   or, to check the path first (bench/gpu_smoke.sh) while the rest travels:
#     call 1: carry .whl and .gpudata/defects9 (manifest.csv, masks and all classes but
#             BS_Pitting and Steel_Patches); bash bench/gpu_data.sh && bash bench/gpu_smoke.sh
#     call 2: carry .gpudata/part2 (part2/defects9/images/BS_Pitting, …/Steel_Patches);
#             bash bench/gpu_data.sh defects9 && bash bench/gpu_quality.sh
#   worker (#13): the stack's wheels (bash bench/stack_wheels.sh: 3 parts) and the fixture
#   (cp -r ../shared/datasets/fixture .gpudata/):
#     calls 1, 2: carry .gpudata/wheels/part1, then .gpudata/wheels/part2;
#             bash bench/gpu_data.sh wheels
#     call 3: carry .gpudata/wheels/part3 and .gpudata/fixture;
#             bash bench/gpu_data.sh wheels && bash bench/gpu_worker.sh
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${GPU_DATA:-/tmp/gpudata}"
mkdir -p "$dest"
if [ -d .gpudata ]; then cp -r .gpudata/. "$dest"/; fi
# a later call's share may sit in .gpudata/part<N>/ (so that it can be carried as one path):
# it joins the tree it belongs to
for part in "$dest"/part*/; do
  if [ -d "$part" ]; then cp -r "$part". "$dest"/; fi
done
case "${1:-}" in
  defects9)
    [ -f "$dest/defects9/manifest.csv" ] || { echo "staged: no manifest.csv yet" >&2; exit 3; }
    want=$(($(wc -l <"$dest/defects9/manifest.csv") - 1))
    have=$(find "$dest/defects9/images" -name '*.png' 2>/dev/null | wc -l)
    echo "staged $have of $want defects9 images in $dest/defects9"
    [ "$have" -ge "$want" ] || exit 3
    ;;
  wheels)
    # no pipe into head: under pipefail its early exit is a SIGPIPE failure (exit 141)
    parts=("$dest"/wheels/part*/PARTS)
    total="" have=0
    if [ -f "${parts[0]}" ]; then total=$(<"${parts[0]}") have=${#parts[@]}; fi
    echo "staged $have of ${total:-?} wheel parts in $dest/wheels"
    [ -n "$total" ] && [ "$have" -ge "$total" ] || exit 3
    ;;
  "") ;;
  *) echo "usage: bash bench/gpu_data.sh [defects9|wheels]" >&2; exit 2 ;;
esac
