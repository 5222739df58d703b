"""Training-free starts on defects9 in seconds: the matchers a residual head starts from.

    python bench/starts.py                       # every variant at 200×200 (features cached once)
    python bench/starts.py --size 320 lda base   # these variants at 320×320
    python bench/starts.py --size 320 --protocol full base lda lda_ms   # 3 seeds × 50 episodes
    python bench/starts.py --size 320 --select lda_ms lda_ms4 lda_ms4_s3  # on non-test classes

Every trained head measured so far ended at or below its own training-free start on novel
classes (docs/benchmarks.md, "Quality"), so the start is the lever: this script scores starts
without training. It runs the frozen ImageNet EfficientNet-Lite0 over every defects9 image once
(eval transform, cached in ``bench/.cache/``), then scores each variant with the library's own
matching functions (``lerenet.model.priors``) on the test episodes of ``bench/quality.py
--protocol quick`` (default) or ``full`` (the same folds and episodes; at 200×200 ``lda`` and
``base`` reproduce that benchmark's start and baseline exactly). ``lda_ms`` averages the LDA of
the images resized to 200, 256 and 320 (each from the original, each fitted on its own grid:
``model.lda_scales`` in the model). A fold's mIoU is the mean over the protocol's episode
seeds. Results: bench/results/starts_<size>[_full].json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lerenet.data.manifest import classes_of, read_manifest  # noqa: E402
from lerenet.data.splits import assign_folds, make_episodes  # noqa: E402
from lerenet.evaluation.metrics import episode_stats, score  # noqa: E402
from lerenet.model.priors import box_smooth, lda_logits, matching_logits  # noqa: E402

DEFECTS9 = ROOT.parent / "shared" / "datasets" / "defects9"
CACHE = Path(__file__).resolve().parent / ".cache"
RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = ("s4", "s8", "s16")
SIZES4 = (200, 256, 320, 384)

# name → (what it is, keyword arguments of ``start_logits``)
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("prototype baseline (cosine to the masked-average prototypes)", {"lda": 0.0}),
    "lda": ("support LDA, shrinkage 3 (the default start)", {}),
    "lda_sh1": ("support LDA, shrinkage 1", {"shrinkage": 1.0}),
    "lda_sh2": ("support LDA, shrinkage 2", {"shrinkage": 2.0}),
    "lda_sh6": ("support LDA, shrinkage 6", {"shrinkage": 6.0}),
    "mix.1": ("support LDA + 0.1 × prototype logits", {"proto": 0.1}),
    "mix.4": ("support LDA + 0.4 × prototype logits", {"proto": 0.4}),
    "lda_ms": ("support LDA averaged over inputs of 200, 256 and 320", {"sizes": (200, 256, 320)}),
    "lda_ms4": ("support LDA averaged over inputs of 200, 256, 320 and 384", {"sizes": SIZES4}),
    "lda_ms4_s3": (
        "lda_ms4 smoothed over 3×3 cells (the default start)",
        {"sizes": SIZES4, "smooth": 3},
    ),
}


@functools.cache
def cached_features(data: Path, size: int) -> dict:
    """Level maps (fp16) and labels of every image at ``size``, computed once per size (and
    read from disk once per process)."""
    path = CACHE / f"defects9_{size}.pt"
    if path.exists():
        return torch.load(path, weights_only=True)  # tensors and names: nothing to run
    from lerenet.config.schema import ModelConfig
    from lerenet.data.episodes import load_pair
    from lerenet.data.transforms import build_transform
    from lerenet.model.build import build_model

    model, _ = build_model(
        ModelConfig(
            backbone="efficientnet_lite0", weights="package", prior="matching", residual="lda"
        )
    )
    backbone = model.backbone.eval()
    transform = build_transform(size, train=False)
    mean, std = tuple(backbone.mean), tuple(backbone.std)
    pairs = read_manifest(data)
    levels: dict[str, list] = {}
    labels = []
    began = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pairs), 32):
            images = []
            for pair in pairs[i : i + 32]:
                image, label = load_pair(data, pair.image, transform, mean, std)
                images.append(image)
                labels.append(label.to(torch.uint8))
            for name, value in backbone.forward_levels(torch.stack(images)).items():
                levels.setdefault(name, []).append(value.half())
    blob = {
        "levels": {name: torch.cat(parts) for name, parts in levels.items()},
        "labels": torch.stack(labels),
        "index": {pair.image: i for i, pair in enumerate(pairs)},
    }
    CACHE.mkdir(exist_ok=True)
    torch.save(blob, path)
    print(f"cached {len(pairs)} images at {size}² in {time.perf_counter() - began:.0f} s")
    return blob


def start_logits(
    blob: dict, queries: list[int], supports: list[list[int]], size: int, *,
    lda: float = 1.0, shrinkage: float = 3.0, proto: float = 0.0, sizes: tuple[int, ...] = (),
    smooth: int = 1, data: Path = DEFECTS9,
) -> torch.Tensor:  # fmt: skip
    """B×2×size×size logits: ``lda`` × support LDA + ``proto`` × prototype cosine logits; with
    ``sizes``, the mean of the LDA logits of the images at each of those sizes instead, each
    brought to the stride-4 grid of ``size`` as the model does (``model.lda_scales``), then
    ``box_smooth``-ed over ``smooth`` cells (``model.lda_smooth``). The episodes' images are the
    same at every size: one index for all caches."""
    if sizes:
        head = (size // 4, size // 4)
        total = sum(
            F.interpolate(
                lda_grid(cached_features(data, s), queries, supports, s, shrinkage),
                head,
                mode="bilinear",
                align_corners=True,
            )
            for s in sizes
        )
        total = box_smooth(total / len(sizes), smooth)
        return F.interpolate(total, (size, size), mode="bilinear", align_corners=True)
    query, support, masks = episode_tensors(blob, queries, supports)
    head = (size // 4, size // 4)
    out = torch.zeros(len(queries), 2, *head)
    if lda:
        out = out + lda * lda_logits(query, support, masks, LEVELS, head, shrinkage=shrinkage)
    if proto or not lda:
        out = out + (proto or 1.0) * matching_logits(query, support, masks, LEVELS, head)
    return F.interpolate(out, (size, size), mode="bilinear", align_corners=True)


def episode_tensors(
    blob: dict, queries: list[int], supports: list[list[int]]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor]:
    """The cached levels of the episodes' queries (B×C×h×w) and supports (B×K×C×h×w), and the
    support labels (B×K×H×W)."""
    rows = torch.tensor(supports)
    query = {n: blob["levels"][n][queries].float() for n in LEVELS}
    support = {n: blob["levels"][n][rows].float() for n in LEVELS}
    return query, support, blob["labels"][rows].long()


def lda_grid(
    blob: dict, queries: list[int], supports: list[list[int]], size: int, shrinkage: float
) -> torch.Tensor:
    """B×2×(size/4)² support-LDA logits of the images at ``size``, on their own grid."""
    query, support, masks = episode_tensors(blob, queries, supports)
    return lda_logits(query, support, masks, LEVELS, (size // 4, size // 4), shrinkage=shrinkage)


def score_episodes(
    blob: dict, pairs: list, classes: list[str], fold: int, shots: int, seed: int,
    per_class: int, args: argparse.Namespace, kwargs: dict, tag: str = "test",
) -> float:  # fmt: skip
    """mIoU of one start on one fold's episodes (``tag`` test: of its test classes) of one
    episode seed."""
    eps = make_episodes(
        pairs, classes, shots=shots, per_class=per_class, seed=seed, tag=f"{tag}{fold}"
    )
    stats = []
    for j in range(0, len(eps), 25):
        chunk = eps[j : j + 25]
        q = [blob["index"][e.query] for e in chunk]
        s = [[blob["index"][x] for x in e.supports] for e in chunk]
        with torch.inference_mode():
            logits = start_logits(blob, q, s, args.size, data=args.data, **kwargs)
        stats.append(episode_stats(logits.argmax(1), blob["labels"][q].long()))
    st = np.concatenate(stats)
    return score(st, sorted(classes), [e.cls for e in eps], bootstrap=10).miou.value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="*", default=list(VARIANTS), help=f"{list(VARIANTS)}")
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--data", type=Path, default=DEFECTS9)
    parser.add_argument("--protocol", choices=["quick", "full"], default="quick")
    parser.add_argument(
        "--select",
        action="store_true",
        help="score on each fold's training and validation classes instead of its test "
        "classes (20 episodes per class, one seed): where a training-free start's settings "
        "are chosen without looking at the test classes",
    )
    args = parser.parse_args()
    # bench/quality.py's protocols: (episode seeds, test episodes per class)
    protocol = {"quick": ((0,), 30), "full": ((0, 1, 2), 50)}[args.protocol]
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {list(VARIANTS)}")
    if not (args.data / "manifest.csv").exists():
        sys.exit(f"{args.data}: defects9 not found (it lives in ../shared/datasets)")
    blob = cached_features(args.data, args.size)
    pairs = read_manifest(args.data)
    folds = assign_folds(classes_of(pairs), seed=0, num_folds=3, val_classes=1)
    suffix = "_select" if args.select else "_full" if args.protocol == "full" else ""
    if args.select:
        protocol = ((0,), 20)
    out_path = RESULTS / f"starts_{args.size}{suffix}.json"
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    for name in args.variants:
        label, kwargs = VARIANTS[name]
        entry: dict = {"label": label}
        for shots in (1, 5):
            per_fold = []
            for i, fold in enumerate(folds):
                seeds, per_class = protocol
                classes, tag = fold.test, "test"
                if args.select:
                    classes, tag = sorted({*fold.train, *fold.val}), "select"
                per_seed = [
                    score_episodes(
                        blob, pairs, classes, i, shots, seed, per_class, args, kwargs, tag
                    )
                    for seed in seeds
                ]
                per_fold.append(round(statistics.mean(per_seed), 4))
            entry[f"{shots}shot"] = {"folds": per_fold, "mean": statistics.mean(per_fold)}
        results[name] = entry
        print(
            f"{name:8s} 1-shot {entry['1shot']['folds']} → {entry['1shot']['mean']:.3f}   "
            f"5-shot {entry['5shot']['folds']} → {entry['5shot']['mean']:.3f}   ({label})",
            flush=True,
        )
        RESULTS.mkdir(exist_ok=True)
        out_path.write_text(json.dumps(results, indent=2) + "\n")  # after each variant


if __name__ == "__main__":
    main()
