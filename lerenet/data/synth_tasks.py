"""Synthetic defect *tasks* painted on real surfaces: many more base classes to train on.

A few-shot head trained on the five or so real base classes of a fold learns what *those*
defects look like instead of how to find what the support shows, and loses to training-free
matching on the novel classes (docs/benchmarks.md, "Quality"). More, and more varied, base
classes is the remedy few-shot segmentation work keeps returning to; a factory rarely has them.
This module makes them: each synthetic class is a random recipe — a shape family (the default
data's scratches, pits, cracks, stains, inclusions, patches, or thresholded noise blobs), a size
and an appearance change (tone, texture swapped in from another surface, blur, grain, contrast,
tint) with its own parameters — drawn with per-image variation onto the *training classes'
own images*, so surfaces stay real and no validation or test image is ever used. The real
defect of a background image is background for the synthetic task, as other classes' objects
are background in PASCAL-5i episodes: the model learns to find *the support's* defect, not
any defect.

Everything is seeded: the same (backgrounds, seed, counts, size) give byte-identical PNGs.
Images land in ``out_dir/images/<Class>/`` and masks in ``out_dir/masks/<Class>/``; class
names start with ``Task_`` so they are never mistaken for real or default-synthetic classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from lerenet.data.imageio import load_rgb
from lerenet.data.synth import DEFECTS, DrawFn

APPEARANCES = ("tone", "texture", "blur", "grain", "contrast", "tint")


def _noise_blob(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    """Irregular regions: smoothed noise above a random quantile."""
    coarse = rng.normal(0, 1, (max(2, size // 8),) * 2).astype(np.float32)
    field = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    level = np.quantile(field, 1 - rng.uniform(0.02, 0.2))
    draw.bitmap((0, 0), Image.fromarray(((field > level) * 255).astype(np.uint8)), fill=255)


SHAPES: tuple[DrawFn, ...] = (*(DEFECTS[name] for name in sorted(DEFECTS)), _noise_blob)


@dataclass(frozen=True)
class Recipe:
    """What makes one synthetic class: its shape family and how it changes the surface."""

    shape: int
    appearance: str
    tone: float
    softness: float
    grain: float
    contrast: float
    tint: tuple[float, float, float]


def random_recipe(rng: np.random.Generator) -> Recipe:
    return Recipe(
        shape=int(rng.integers(len(SHAPES))),
        appearance=str(rng.choice(APPEARANCES)),
        tone=float(rng.choice([-1, 1]) * rng.uniform(0.08, 0.4)),
        softness=float(rng.uniform(0.5, 2.5)),
        grain=float(rng.uniform(0.05, 0.25)),
        contrast=float(rng.uniform(0.3, 2.0)),
        tint=tuple(float(v) for v in rng.uniform(-0.2, 0.2, 3)),
    )


def paint(
    surface: np.ndarray, recipe: Recipe, rng: np.random.Generator, other: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one defect of ``recipe`` onto ``surface`` (H×W×3 uint8, square).

    ``other`` is the surface a ``texture`` defect shows through. Returns the image and its
    0/255 mask.
    """
    size = surface.shape[0]
    canvas = Image.new("L", (size, size), 0)
    for _ in range(20):  # a shape can fall outside the frame: draw until something shows
        SHAPES[recipe.shape](ImageDraw.Draw(canvas), rng, size)
        if (np.asarray(canvas) > 0).sum() >= 6:
            break
    defect = np.asarray(canvas) > 0
    blur = ImageFilter.GaussianBlur(recipe.softness)
    alpha = np.asarray(canvas.filter(blur), np.float32)[..., None] / 255
    img = surface.astype(np.float32) / 255
    jitter = rng.uniform(0.7, 1.3)
    kind = recipe.appearance
    if kind == "tone":
        changed = img + recipe.tone * jitter
    elif kind == "texture":
        changed = other.astype(np.float32) / 255
    elif kind == "blur":
        changed = cv2.GaussianBlur(img, (0, 0), 2 + 3 * jitter) + 0.3 * recipe.tone
    elif kind == "grain":
        changed = img + rng.normal(0, recipe.grain * jitter, img.shape[:2])[..., None]
    elif kind == "contrast":
        changed = (img - img.mean()) * recipe.contrast + img.mean() + 0.3 * recipe.tone
    else:
        changed = img + np.asarray(recipe.tint, np.float32) * jitter
    out = np.clip(img * (1 - alpha) + changed.astype(np.float32) * alpha, 0, 1)
    return (out * 255).round().astype(np.uint8), defect.astype(np.uint8) * 255


def _surface(root: Path, image: str, size: int) -> np.ndarray:
    return cv2.resize(load_rgb(root / image), (size, size), interpolation=cv2.INTER_AREA)


def write_tasks(
    root: Path,
    backgrounds: list[str],
    out_dir: Path,
    *,
    classes: int,
    per_class: int,
    size: int,
    seed: int,
) -> dict[str, list[str]]:
    """Render ``classes`` synthetic classes × ``per_class`` pairs on ``backgrounds``.

    ``backgrounds``: image paths relative to ``root`` — the training classes' images.
    Returns class → absolute image paths (episodes refer to them directly).
    """
    if not backgrounds:
        raise ValueError("synthetic tasks need at least one background image")
    out_dir = Path(out_dir).resolve()
    rng = np.random.default_rng([seed, classes, per_class, size])
    order = sorted(backgrounds)
    written: dict[str, list[str]] = {}
    for index in range(classes):
        name = f"Task_{index:03d}"
        recipe = random_recipe(rng)
        for item in range(per_class):
            surface = _surface(root, order[rng.integers(len(order))], size)
            other = _surface(root, order[rng.integers(len(order))], size)
            image, mask = paint(surface, recipe, rng, other)
            img_path = out_dir / "images" / name / f"{item:03d}.png"
            mask_path = out_dir / "masks" / name / f"{item:03d}.png"
            img_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(img_path)
            Image.fromarray(mask).save(mask_path)
            written.setdefault(name, []).append(str(img_path))
    return written
