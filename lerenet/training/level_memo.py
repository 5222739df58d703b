"""Backbone levels of each evaluation image, computed once and reused across episodes.

In eval mode the backbone is a fixed function of the image (BatchNorm on running statistics,
no augmentation), and episode files draw the same images again and again: the full quality
benchmark's 1,350 test episodes of a fold read about 530 images 3,600 times, a training's
validation rounds read the same few dozen images every round. ``LevelMemo`` keeps the levels
``forward_levels`` reads for each image, so evaluation pays the backbone once per image and the
head once per episode. The head's own input (``head_features``) is not memoised: it may train.

A memo belongs to one model in one state. ``predict_episodes`` makes a fresh one per call
unless given one; pass the same memo to several calls only while the backbone cannot change
(a frozen backbone across validation rounds, one model over several episode files).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from lerenet.model.lerenet import Levels, encode_together

DEFAULT_BYTES = 2 * 1024**3  # about 600 images at 320×320 with the default's four scales


def level_bytes(levels: Levels) -> int:
    return sum(t.numel() * t.element_size() for t in levels.values())


class LevelMemo:
    """Least-recently-used map (image path, size) → that image's levels, within a byte budget.

    ``hits``/``misses`` count images served from the memo and images run through the backbone.
    """

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = 0
        self.misses = 0
        self._items: OrderedDict[tuple[str, tuple[int, ...]], Levels] = OrderedDict()
        self._owner: int | None = None

    def __len__(self) -> int:
        return len(self._items)

    def _check_owner(self, model: nn.Module) -> None:
        # levels are the backbone's: models sharing one frozen backbone object (a trained
        # model and its training-free start) may share a memo
        owner = id(getattr(model, "backbone", model))
        if self._owner is None:
            self._owner = owner
        elif self._owner != owner:
            raise ValueError("a LevelMemo serves one backbone: make a new one for another model")

    def _store(self, key: tuple[str, tuple[int, ...]], levels: Levels) -> None:
        size = level_bytes(levels)
        if size > self.max_bytes:
            return
        while self._items and self.nbytes + size > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self.nbytes -= level_bytes(dropped)
        self._items[key] = levels
        self.nbytes += size

    def levels(self, model: nn.Module, paths: list[str], images: torch.Tensor) -> Levels:
        """Levels of ``images`` (N×3×H×W, image i read from ``paths[i]``), stacked in order.

        Only images the memo lacks go through ``model.image_levels``, once each however often
        a path repeats in ``paths``. Call inside the caller's inference context.
        """
        self._check_owner(model)
        shape = tuple(images.shape[-2:])
        got: dict[str, Levels] = {}
        new: dict[str, int] = {}  # path → its first row in ``images``
        for row, path in enumerate(paths):
            key = (path, shape)
            if path in got or path in new:
                continue
            if key in self._items:
                self._items.move_to_end(key)
                got[path] = self._items[key]
                self.hits += 1
            else:
                new[path] = row
        if new:
            rows = torch.tensor(list(new.values()), device=images.device)
            feats = model.image_levels(images.index_select(0, rows))
            for i, path in enumerate(new):
                one = {name: value[i] for name, value in feats.items()}
                got[path] = one
                self._store((path, shape), one)
            self.misses += len(new)
        names = next(iter(got.values())).keys()
        return {name: torch.stack([got[p][name] for p in paths]) for name in names}


def memo_logits(
    model: nn.Module,
    memo: LevelMemo,
    batch: dict,
    paths: list[list[str]],
    route: torch.Tensor | None = None,
):
    """The model's logits for a batch of eval episodes, backbone levels from ``memo``.

    ``paths``: per episode, the query's path then its supports' (the dataset's order).
    Tensors in ``batch`` must be on the model's device. ``route``: a class memory's class of
    each episode (``LERENet.forward_levels``).
    """
    query = batch["query_img"]
    # encode_together's order: every query, then every episode's supports
    flat_paths = [p[0] for p in paths] + [s for p in paths for s in p[1:]]
    query_levels, support_levels = encode_together(
        query, batch["support_imgs"], lambda images: memo.levels(model, flat_paths, images)
    )
    size = tuple(query.shape[-2:])
    if route is None:
        return model.forward_levels(query_levels, support_levels, batch["support_masks"], size)
    return model.forward_levels(query_levels, support_levels, batch["support_masks"], size, route)
