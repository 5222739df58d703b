"""A torch ``Dataset`` of episodes in the model's contract.

Each item: ``query_img`` 3×H×W, ``query_mask`` H×W (0/1, 255 = ignore), ``support_imgs``
K×3×H×W, ``support_masks`` K×H×W, ``class_id`` (index into the dataset's class list), plus the
file paths for overlays. The default collate stacks items into the B×… batch the model takes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from lerenet.data.imageio import load_label, load_rgb
from lerenet.data.manifest import mask_of
from lerenet.data.splits import Episode
from lerenet.data.transforms import build_transform, to_tensors


def load_pair(
    root: Path, image_rel: str, transform, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """An image and its mask (``manifest.mask_of``), transformed together: a normalised
    3×H×W float and H×W long labels (0/1, 255 = ignore). ``image_rel`` may be absolute."""
    image = load_rgb(Path(root) / image_rel)
    label = load_label(Path(root) / mask_of(image_rel))
    out = transform(image=image, mask=label)
    return to_tensors(out["image"], out["mask"].astype(np.uint8), mean, std)


class EpisodeDataset(Dataset):
    """Episodes read from image/mask files under ``root``.

    ``train=True`` augments every image independently with an item-seeded albumentations
    pipeline, so the same (seed, index) gives the same augmentation on any worker count.
    """

    def __init__(
        self,
        root: Path,
        episodes: list[Episode],
        classes: list[str],
        *,
        image_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        train: bool = False,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.episodes = episodes
        self.class_index = {c: i for i, c in enumerate(classes)}
        self.image_size, self.mean, self.std = image_size, mean, std
        self.train, self.seed = train, seed

    def __len__(self) -> int:
        return len(self.episodes)

    def _load(self, image_rel: str, transform) -> tuple[torch.Tensor, torch.Tensor]:
        return load_pair(self.root, image_rel, transform, self.mean, self.std)

    def __getitem__(self, index: int) -> dict:
        ep = self.episodes[index]
        transform = build_transform(
            self.image_size, self.train, seed=self.seed * 1_000_003 + index if self.train else None
        )
        query_img, query_mask = self._load(ep.query, transform)
        supports = [self._load(s, transform) for s in ep.supports]
        return {
            "query_img": query_img,
            "query_mask": query_mask,
            "support_imgs": torch.stack([s[0] for s in supports]),
            "support_masks": torch.stack([s[1] for s in supports]),
            "class_id": self.class_index.get(ep.cls, -1),
            "query_path": ep.query,
        }
