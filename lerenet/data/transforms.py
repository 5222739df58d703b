"""Image/mask transforms (albumentations 2.x), applied identically to an image and its mask.

Training augmentation follows the paper: random scale 0.9–1.1, rotation ±10°, Gaussian blur and
horizontal flip, then resize to ``image_size``. Pixels that the affine warp brings in from
outside the frame get mask value 255 (ignore), so the loss never learns from invented borders.
Evaluation only resizes. Normalisation uses the backbone's own mean/std.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import torch

from lerenet.config.labels import IGNORE


def build_transform(image_size: int, train: bool, seed: int | None = None) -> A.Compose:
    steps: list = []
    if train:
        steps += [
            A.Affine(
                scale=(0.9, 1.1),
                rotate=(-10, 10),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=IGNORE,
                p=1.0,
            ),
            A.GaussianBlur(blur_limit=(3, 5), p=0.3),
            A.HorizontalFlip(p=0.5),
        ]
    steps.append(
        A.Resize(
            image_size,
            image_size,
            interpolation=cv2.INTER_LINEAR,
            mask_interpolation=cv2.INTER_NEAREST,
        )
    )
    return A.Compose(steps, seed=seed)


def to_tensors(
    image: np.ndarray, label: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """H×W×3 uint8 + H×W labels → normalised 3×H×W float and H×W long."""
    img = torch.from_numpy(np.array(image, copy=True)).permute(2, 0, 1).float() / 255.0
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return (img - mean_t) / std_t, torch.from_numpy(np.ascontiguousarray(label)).long()


def query_tensor(
    rgb: np.ndarray, transform: A.Compose, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """A lone image (no label: a query to segment) as the model takes it, 3×S×S normalised,
    through the same evaluation transform as a labelled pair (with an empty mask beside it)."""
    out = transform(image=rgb, mask=np.zeros(rgb.shape[:2], np.uint8))
    return to_tensors(out["image"], out["mask"], mean, std)[0]
