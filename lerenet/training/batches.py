"""Where a training step's episodes come from: images, or cached features of a frozen backbone.

``episode_sampler`` draws each step's episodes from the fold's training classes and, when
``train.synthetic_classes`` is set, from synthetic classes painted on those classes' images
(``data/synth_tasks.py``). ``training_batches`` turns the sampler into the step stream the loop
consumes: collated image episodes through a ``DataLoader`` (augmented per item, seeded by the
step), or, with ``train.feature_cache``, batches assembled from backbone features computed once
per augmented copy (``features.py``). ``step_logits`` runs the model on either kind. Both
streams are functions of (seed, step) only, so a resumed run sees what an uninterrupted one
sees.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from lerenet.config.schema import Params
from lerenet.data.episodes import EpisodeDataset
from lerenet.data.manifest import read_manifest
from lerenet.data.splits import Episode, TrainEpisodeSampler
from lerenet.model.memory import class_indices
from lerenet.training.feature_cache import build_cache, cached_batch, drawn_copies


class StepBatches(Dataset):
    """Item i = the collated batch of training step ``start + i`` (seeded by the step)."""

    def __init__(
        self,
        sampler: TrainEpisodeSampler,
        params: Params,
        classes: list[str],
        mean,
        std,
        start: int,
        end: int,
        memory_classes: tuple[str, ...] | None = None,
    ) -> None:
        self.sampler, self.params, self.classes = sampler, params, classes
        self.memory_classes = memory_classes
        self.mean, self.std, self.start, self.end = mean, std, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, index: int) -> dict:
        step = self.start + index
        tcfg = self.params.train
        episodes = self.sampler.batch(step, tcfg.batch_size)
        ds = EpisodeDataset(
            Path(self.params.data.root),
            episodes,
            self.classes,
            image_size=self.params.data.image_size,
            mean=self.mean,
            std=self.std,
            train=tcfg.augment,
            seed=step_seed(tcfg.seed, step),
        )
        return default_collate([ds[i] for i in range(len(ds))]) | routed(
            self.memory_classes, episodes
        )


def memory_classes(model: nn.Module) -> tuple[str, ...] | None:
    """The classes of ``model``'s class memory, None without one."""
    memory = getattr(model, "memory", None)
    return None if memory is None else memory.classes


def routed(classes: tuple[str, ...] | None, episodes: list[Episode]) -> dict:
    """``{"route": …}``: each episode's class in a class memory of ``classes`` (``NO_ROUTE``
    for others, such as synthetic classes); nothing without a memory."""
    if classes is None:
        return {}
    return {"route": class_indices(classes, [ep.cls for ep in episodes])}


def step_logits(model: nn.Module, batch: dict, device: torch.device) -> torch.Tensor:
    """The model's logits for one training batch: images, or cached backbone levels. With a
    class memory the batch's ``route`` (``routed``) says whose classifier learns."""
    route = batch.get("route")
    if "query_levels" in batch:
        return model.forward_levels(
            batch["query_levels"],
            batch["support_levels"],
            batch["support_masks"],
            tuple(batch["query_mask"].shape[-2:]),
            route=None if route is None else route.to(device),
        )
    extra = () if route is None else (route.to(device),)
    return model(
        batch["query_img"].to(device),
        batch["support_imgs"].to(device),
        batch["support_masks"].to(device),
        *extra,
    )


def frozen_backbone(params: Params) -> bool:
    """Whether training leaves the backbone as it is: no gradient steps on its weights and
    no updates of its BatchNorm statistics. Then its levels of an image never change."""
    return params.train.backbone_lr_mult == 0 and params.model.backbone_bn == "frozen"


def check_feature_cache(params: Params) -> None:
    """The cache holds features of a frozen backbone; refuse a configuration that trains it."""
    tcfg, mcfg = params.train, params.model
    if tcfg.feature_cache and not frozen_backbone(params):
        raise ValueError(
            "train.feature_cache needs a frozen backbone: set train.backbone_lr_mult: 0 and "
            f"model.backbone_bn: frozen (now {tcfg.backbone_lr_mult} and {mcfg.backbone_bn})"
        )


def synthetic_tasks(
    params: Params, train_classes: list[str], out_dir: Path, held_out: frozenset[str]
) -> dict | None:
    """Render the configured synthetic classes on the fold's training images, without the
    images the split held out (or None)."""
    tcfg = params.train
    if not tcfg.synthetic_classes:
        return None
    from lerenet.data.synth_tasks import write_tasks

    root = Path(params.data.root)
    backgrounds = [
        p.image for p in read_manifest(root) if p.cls in train_classes and p.image not in held_out
    ]
    return write_tasks(
        root,
        backgrounds,
        out_dir / "synthetic_tasks",
        classes=tcfg.synthetic_classes,
        per_class=tcfg.synthetic_per_class,
        size=params.data.image_size,
        seed=tcfg.seed,
    )


def step_seed(seed: int, step: int) -> int:
    """The augmentation / copy seed of one training step."""
    return seed * 1_000_003 + step


def episode_sampler(
    params: Params, train_classes: list[str], out_dir: Path, held_out: frozenset[str]
) -> TrainEpisodeSampler:
    """The seeded episode stream of the fold's training (and synthetic) classes, without the
    images the split held out (``data/holdout.py``)."""
    tcfg = params.train
    return TrainEpisodeSampler(
        read_manifest(Path(params.data.root)),
        train_classes,
        tcfg.shots or params.model.shots,
        tcfg.seed,
        extra=synthetic_tasks(params, train_classes, out_dir, held_out),
        extra_share=tcfg.synthetic_share,
        exclude=set(held_out),
    )


def training_batches(
    params: Params,
    model: nn.Module,
    sampler: TrainEpisodeSampler,
    start: int,
    end: int,
    device: torch.device,
    show_progress: bool,
) -> Iterable[dict]:
    """The batches of steps ``start``..``end``-1: cached features or collated images."""
    from lerenet.evaluation.scoring import backbone_norm

    tcfg = params.train
    mean, std = backbone_norm(model)
    if tcfg.feature_cache:
        size = tcfg.batch_size
        steps = [
            (sampler.batch(step, size), step_seed(tcfg.seed, step)) for step in range(start, end)
        ]
        cache = build_cache(
            model.backbone,
            Path(params.data.root),
            sampler.images(),
            image_size=params.data.image_size,
            copies=tcfg.cache_copies,
            seed=tcfg.seed,
            mean=mean,
            std=std,
            device=device,
            num_workers=tcfg.num_workers,
            show_progress=show_progress,
            scales=tuple(params.model.lda_scales),
            scaled_levels=model.scaled_levels,
            drawn=drawn_copies(steps, tcfg.cache_copies),
        )
        return (
            cached_batch(cache, episodes, seed, device) | routed(memory_classes(model), episodes)
            for episodes, seed in steps
        )
    return DataLoader(
        StepBatches(sampler, params, sampler.classes, mean, std, start, end, memory_classes(model)),
        batch_size=None,
        shuffle=False,
        num_workers=tcfg.num_workers,
        # its own generator: a DataLoader iterator otherwise draws its base seed from the
        # global RNG, which would shift the dropout stream of a resumed run
        generator=torch.Generator().manual_seed(tcfg.seed),
    )
