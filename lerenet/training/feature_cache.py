"""Cached backbone features: training steps that run the head only.

With a frozen backbone (``train.backbone_lr_mult: 0`` and ``model.backbone_bn: frozen``) the
pretrained levels are a fixed function of the augmented image, so computing them again at every
step wastes most of a CPU training step. ``build_cache`` runs the backbone once over the
training images in ``copies`` seeded augmentations (the paper's: scale, rotation, blur, flip) and
keeps the level maps in memory as fp16; ``cached_batch`` then assembles a step's episodes from
them, choosing one copy per image from the step's seed, so a resumed run draws what an
uninterrupted one draws. Those choices are known before training (``drawn_copies``), so only
the copies the steps read are computed: a 300-step run reads 695 of 4,896. The head's own
input (the EfficientNet projection) is *not* cached: it trains. Memory: about 0.2 MB per copy
at 200×200 with levels s4, s8, s16.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.progress import Progress
from torch import nn
from torch.utils.data import DataLoader, Dataset

from lerenet.data.episodes import load_pair
from lerenet.data.splits import Episode
from lerenet.data.transforms import build_transform
from lerenet.model.lerenet import levels_at_scales
from lerenet.training.throughput import eta_text

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 60.0  # a progress line this often while the cache fills (logs, not the bar)


@dataclass
class FeatureCache:
    """Level maps of every cached image copy, and where each image's copies are."""

    levels: dict[str, torch.Tensor]  # name → N×C×h×w, fp16
    labels: torch.Tensor  # N×H×W uint8 (0, 1, 255)
    rows: dict[str, list[int]]  # image path → the row of each copy, -1 where not computed

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.levels.values(), self.labels))


def image_key(image: str) -> str:
    """``<Class>/<file>``: what seeds an image's augmentations, wherever its folder lives (a
    resumed run may render its synthetic tasks under another directory)."""
    return "/".join(Path(image).parts[-2:])


class _Copies(Dataset):
    """Item i = (augmented image, label) of job i = (image, copy index)."""

    def __init__(
        self,
        root: Path,
        jobs: list[tuple[str, int]],
        image_size: int,
        seed: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
    ) -> None:
        self.root, self.jobs, self.image_size, self.seed = root, jobs, image_size, seed
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, copy = self.jobs[index]
        rng = random.Random(f"{self.seed}|{image_key(image)}|{copy}")
        transform = build_transform(self.image_size, True, seed=rng.randrange(2**31))
        img, label = load_pair(self.root, image, transform, self.mean, self.std)
        return img, label.to(torch.uint8)


def build_cache(
    backbone: nn.Module,
    root: Path,
    images: list[str],
    *,
    image_size: int,
    copies: int,
    seed: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 32,
    num_workers: int = 0,
    show_progress: bool = True,
    scales: tuple[float, ...] = (1.0,),
    scaled_levels: tuple[str, ...] = (),
    drawn: set[tuple[str, int]] | None = None,
) -> FeatureCache:
    """Run the frozen backbone's levels over ``copies`` augmented versions of each image.

    Copy c of an image is augmented with a pipeline seeded by (seed, ``image_key``, c): the
    cache is the same on every run with the same inputs, whatever ``num_workers`` decode and
    augment in parallel. ``images`` may be absolute paths (synthetic tasks) or paths relative
    to ``root``. ``scales``/``scaled_levels``: also cache those levels of each copy resized
    by the other scales (``model.lerenet.levels_at_scales``, for a multi-scale LDA start).
    ``drawn``: compute only these (image, copy) pairs, the ones the steps to run will read
    (``drawn_copies``); a copy's features do not depend on which others are computed.
    """
    from lerenet.evaluation.inference import fast_backbone

    fast = fast_backbone(backbone, device)  # BN folded, channels-last: the backbone is frozen
    jobs = [
        (image, c)
        for image in images
        for c in range(copies)
        if drawn is None or (image, c) in drawn
    ]
    loader = DataLoader(
        _Copies(Path(root), jobs, image_size, seed, mean, std),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        # its own generator: an iterator otherwise draws a seed from the global RNG, which
        # would shift the dropout stream of a resumed run against an uninterrupted one
        generator=torch.Generator().manual_seed(seed),
    )
    log.info(
        "caching backbone features of %d augmented copies (the steps read them; %d images × %d)",
        len(jobs),
        len(images),
        copies,
    )
    began = time.perf_counter()
    with Progress(disable=not show_progress, transient=True) as progress:
        bar = progress.add_task(f"caching features of {len(images)} images", total=len(jobs))
        levels, labels = _fill(
            loader, len(jobs), lambda imgs: levels_at_scales(fast, imgs, scales, scaled_levels),
            device, lambda n: progress.update(bar, advance=n),
        )  # fmt: skip
    log.info("feature cache built in %.0f s", time.perf_counter() - began)
    rows = {image: [-1] * copies for image in images}
    for row, (image, copy) in enumerate(jobs):
        rows[image][copy] = row
    return FeatureCache(levels, labels, rows)


def _fill(
    loader: DataLoader,
    total: int,
    features: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    device: torch.device,
    advance: Callable[[int], object],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Run ``features`` over the loader's batches into preallocated float16 tensors.

    Filled in place, not concatenated at the end: a cache of 10 GB (defects9 at 320×320,
    three scales; about 17 GB with the fourth, 1.2×) would need twice that for a moment."""
    levels: dict[str, torch.Tensor] = {}
    labels = torch.empty(0, dtype=torch.uint8)
    began, done, said = time.perf_counter(), 0, time.perf_counter()
    for imgs, labs in loader:
        with torch.inference_mode():
            imgs = imgs.to(device, non_blocking=True, memory_format=torch.channels_last)
            feats = features(imgs)
        if not levels:
            levels = {
                name: torch.empty((total, *value.shape[1:]), dtype=torch.float16)
                for name, value in feats.items()
            }
            labels = torch.empty((total, *labs.shape[1:]), dtype=torch.uint8)
        batch = slice(done, done + len(labs))
        for name, value in feats.items():
            levels[name][batch] = value.half().cpu()
        labels[batch] = labs
        done += len(labs)
        advance(len(labs))
        if time.perf_counter() - said >= PROGRESS_EVERY_S and done < total:
            said = time.perf_counter()  # minutes of work on a CPU: a line a minute
            log.info(
                "cached %d/%d copies%s", done, total, eta_text(said - began, done, total - done)
            )
    return levels, labels


def copy_choices(
    episodes: list[Episode], seed: int, copies: int
) -> tuple[list[int], list[list[int]]]:
    """The copy of each query and of each support image that a step seeded ``seed`` reads.

    One function for ``cached_batch`` and ``drawn_copies``: the rows a training will read are
    known before any is computed.
    """
    rng = random.Random(seed)
    query = [rng.choice(range(copies)) for _ in episodes]
    supports = [[rng.choice(range(copies)) for _ in ep.supports] for ep in episodes]
    return query, supports


def drawn_copies(batches: Iterable[tuple[list[Episode], int]], copies: int) -> set[tuple[str, int]]:
    """Every (image, copy) that the steps' (episodes, seed) read. A short training reads a
    fraction of images × copies (the README's run: 695 of 4,896), so the cache computes
    these alone; a long one reads nearly all."""
    drawn: set[tuple[str, int]] = set()
    for episodes, seed in batches:
        query, supports = copy_choices(episodes, seed, copies)
        for ep, q, sup in zip(episodes, query, supports, strict=True):
            drawn.add((ep.query, q))
            drawn.update(zip(ep.supports, sup, strict=True))
    return drawn


def cached_batch(
    cache: FeatureCache, episodes: list[Episode], seed: int, device: torch.device
) -> dict:
    """One training step's episodes from the cache, one seeded copy per image.

    Returns ``query_levels`` {level: B×C×h×w}, ``support_levels`` {level: B×K×C×h×w},
    ``support_masks`` B×K×H×W and ``query_mask`` B×H×W (long, on ``device``).
    """
    copies = len(next(iter(cache.rows.values())))
    query, supports = copy_choices(episodes, seed, copies)
    query_rows = [cache.rows[ep.query][c] for ep, c in zip(episodes, query, strict=True)]
    support_rows = [
        [cache.rows[image][c] for image, c in zip(ep.supports, sup, strict=True)]
        for ep, sup in zip(episodes, supports, strict=True)
    ]
    if min(query_rows + [r for rows in support_rows for r in rows]) < 0:
        raise LookupError("a step reads an image copy the feature cache did not compute")
    b, k = len(episodes), len(episodes[0].supports)
    flat = torch.tensor([r for rows in support_rows for r in rows])
    query_idx = torch.tensor(query_rows)

    def take(rows: torch.Tensor, name: str) -> torch.Tensor:
        return cache.levels[name][rows].to(device).float()

    return {
        "query_levels": {name: take(query_idx, name) for name in cache.levels},
        "support_levels": {name: take(flat, name).unflatten(0, (b, k)) for name in cache.levels},
        "support_masks": cache.labels[flat].long().unflatten(0, (b, k)).to(device),
        "query_mask": cache.labels[query_idx].long().to(device),
    }
