"""How much IoU the head's logit grid can hold at all: the ground truth through that grid.

LERENet's logits live on the stride-4 grid (80×80 at 320×320) and are upsampled bilinearly, so
a mask finer than a cell cannot come out whatever the model learns. This measures that ceiling
per class: each label, resized to the input as the evaluation resizes it, is averaged over the
grid's cells (the defect share per cell, ignore pixels left out), upsampled back bilinearly and
thresholded at one half, then scored against itself with the evaluation's per-class IoU (sums
over a class's images). Where the ceiling sits far above what the model scores, a finer output
cannot be what is missing. No model, no training: a minute on CPU. Usage::

    python bench/grid_ceiling.py --sizes 128 320
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from lerenet.config.labels import IGNORE
from lerenet.data.episodes import load_pair
from lerenet.data.manifest import read_manifest
from lerenet.data.transforms import build_transform

ROOT = Path(__file__).resolve().parents[1]
DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"
STRIDES = (4, 8)  # the head's grid (stride 4) and the next level's, for comparison


def through_grid(label: torch.Tensor, stride: int) -> torch.Tensor:
    """``label`` (H×W, 0/1/IGNORE) → its defect mask after a stride-``stride`` grid."""
    known = (label != IGNORE).float()[None, None]
    defect = (label == 1).float()[None, None]
    size = (label.shape[0] // stride, label.shape[1] // stride)
    share = F.adaptive_avg_pool2d(defect, size) / F.adaptive_avg_pool2d(known, size).clamp_min(1e-6)
    up = F.interpolate(share, size=tuple(label.shape), mode="bilinear", align_corners=False)
    return up[0, 0] > 0.5


def ceilings(data: Path, size: int) -> dict[str, dict[str, float]]:
    """Per class and stride: the IoU of the labels with themselves through the grid."""
    transform = build_transform(size, train=False)
    sums: dict[str, dict[int, list[int]]] = defaultdict(lambda: {s: [0, 0] for s in STRIDES})
    for pair in read_manifest(data):
        _, label = load_pair(data, pair.image, transform, (0.0,) * 3, (1.0,) * 3)
        truth = label == 1
        known = label != IGNORE
        for stride in STRIDES:
            pred = through_grid(label, stride) & known
            sums[pair.cls][stride][0] += int((pred & truth).sum())
            sums[pair.cls][stride][1] += int((pred | truth).sum())
    return {
        name: {f"stride{s}": inter / max(union, 1) for s, (inter, union) in per.items()}
        for name, per in sorted(sums.items())
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFECTS9, help="a dataset with manifest.csv")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 320], help="input sizes")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "grid_ceiling.json"
    )
    args = parser.parse_args()
    if not (args.data / "manifest.csv").is_file():
        raise SystemExit(f"no manifest.csv under {args.data}: pass --data")
    results = {str(size): ceilings(args.data, size) for size in args.sizes}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    classes = list(next(iter(results.values())))
    header = " | ".join(f"{size}: stride {s}" for size in args.sizes for s in STRIDES)
    print(f"| class | {header} |\n|---|" + "---|" * (len(args.sizes) * len(STRIDES)))
    for name in [*classes, "mean"]:
        cells = []
        for size in args.sizes:
            for s in STRIDES:
                per = results[str(size)]
                value = (
                    sum(per[c][f"stride{s}"] for c in classes) / len(classes)
                    if name == "mean"
                    else per[name][f"stride{s}"]
                )
                cells.append(f"{value:.3f}")
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
