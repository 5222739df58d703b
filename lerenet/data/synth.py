"""A small deterministic set of *synthetic* surface defects for the default run and tests.

Textured metal-like surfaces (brushed streaks, low-frequency shading, grain noise) with one
defect kind per class, drawn with its exact mask:

- ``Synth_Scratch``: long thin straight or slightly curved lines;
- ``Synth_Pit``: a few small round pits with a dark core;
- ``Synth_Crack``: a jagged random-walk polyline, sometimes branching;
- ``Synth_Stain``: a large soft irregular blob of changed tone;
- ``Synth_Inclusion``: small elongated dark ellipses, aligned with the rolling direction;
- ``Synth_Patch``: a rectangular-ish area of different, rougher texture.

Every class name starts with ``Synth_`` so synthetic data is never mistaken for real defects.
The same (seed, count, size) always gives byte-identical PNGs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

DrawFn = Callable[[ImageDraw.ImageDraw, np.random.Generator, int], None]


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """Grey brushed-metal texture in [0, 1], H×W float32."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    angle = rng.uniform(0, np.pi)
    base = 0.45 + 0.1 * np.sin(
        2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) * rng.uniform(0.3, 1.2)
        + rng.uniform(0, 6.3)
    )
    streaks = rng.normal(0, 1, size).astype(np.float32)
    streaks = np.convolve(streaks, np.ones(5) / 5, mode="same")[None, :] * 0.04
    grain = rng.normal(0, 0.035, (size, size)).astype(np.float32)
    return np.clip(base + streaks + grain, 0, 1)


def _scratch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(rng.integers(1, 3)):
        x0, y0 = rng.uniform(0, size, 2)
        angle, length = rng.uniform(0, np.pi), rng.uniform(0.4, 0.9) * size
        bend = rng.uniform(-0.15, 0.15) * size
        pts = [
            (
                x0 + t * length * np.cos(angle) + bend * np.sin(np.pi * t) * -np.sin(angle),
                y0 + t * length * np.sin(angle) + bend * np.sin(np.pi * t) * np.cos(angle),
            )
            for t in np.linspace(0, 1, 12)
        ]
        draw.line(pts, fill=255, width=int(rng.integers(2, 5)))


def _pit(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(rng.integers(1, 5)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        r = rng.uniform(0.02, 0.06) * size
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)


def _crack(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    def walk(x: float, y: float, heading: float, steps: int) -> None:
        pts = [(x, y)]
        for _ in range(steps):
            heading += rng.normal(0, 0.5)
            x += np.cos(heading) * size * 0.04
            y += np.sin(heading) * size * 0.04
            pts.append((x, y))
            if rng.random() < 0.08 and steps > 4:
                walk(x, y, heading + rng.choice([-1, 1]) * 0.9, steps // 3)
        draw.line(pts, fill=255, width=int(rng.integers(2, 5)))

    walk(*rng.uniform(0.2, 0.8, 2) * size, rng.uniform(0, 2 * np.pi), int(rng.integers(10, 20)))


def _stain(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    cx, cy = rng.uniform(0.3, 0.7, 2) * size
    angles = np.sort(rng.uniform(0, 2 * np.pi, 14))
    radii = rng.uniform(0.12, 0.28, 14) * size
    draw.polygon(
        [(cx + r * np.cos(a), cy + r * np.sin(a)) for a, r in zip(angles, radii, strict=True)],
        fill=255,
    )


def _inclusion(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    for _ in range(rng.integers(2, 6)):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        a, b = rng.uniform(0.05, 0.12) * size, rng.uniform(0.01, 0.025) * size
        draw.ellipse([cx - a, cy - b, cx + a, cy + b], fill=255)


def _patch(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int) -> None:
    x0, y0 = rng.uniform(0.05, 0.5, 2) * size
    w, h = rng.uniform(0.2, 0.45, 2) * size
    jitter = rng.uniform(-0.04, 0.04, 8) * size
    draw.polygon(
        [
            (x0 + jitter[0], y0 + jitter[1]),
            (x0 + w + jitter[2], y0 + jitter[3]),
            (x0 + w + jitter[4], y0 + h + jitter[5]),
            (x0 + jitter[6], y0 + h + jitter[7]),
        ],
        fill=255,
    )


# class name → (mask drawing, how the defect changes the surface)
DEFECTS: dict[str, DrawFn] = {
    "Synth_Scratch": _scratch,
    "Synth_Pit": _pit,
    "Synth_Crack": _crack,
    "Synth_Stain": _stain,
    "Synth_Inclusion": _inclusion,
    "Synth_Patch": _patch,
}
_TONE = {
    "Synth_Scratch": 0.35,
    "Synth_Pit": -0.35,
    "Synth_Crack": -0.4,
    "Synth_Stain": -0.15,
    "Synth_Inclusion": -0.3,
    "Synth_Patch": 0.0,
}


def render_pair(cls: str, index: int, size: int, seed: int) -> tuple[Image.Image, Image.Image]:
    """One synthetic RGB image and its 0/255 mask; never an empty mask."""
    class_idx = sorted(DEFECTS).index(cls)
    rng = np.random.default_rng([seed, class_idx, index])
    surface = _surface(rng, size)
    mask_img = Image.new("L", (size, size), 0)
    while True:
        DEFECTS[cls](ImageDraw.Draw(mask_img), rng, size)
        mask = np.asarray(mask_img) > 0
        if mask.sum() >= 4:
            break
    soft = np.asarray(mask_img.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255
    if cls == "Synth_Patch":
        rough = rng.normal(0, 0.12, (size, size)).astype(np.float32)
        surface = surface + soft * (rough - 0.08)
    else:
        surface = surface + soft * _TONE[cls] * rng.uniform(0.7, 1.2)
    tint = rng.uniform(0.9, 1.1, 3).astype(np.float32)
    rgb = np.clip(surface[..., None] * tint * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB"), Image.fromarray(mask.astype(np.uint8) * 255, "L")


def write_synthetic(
    out: Path,
    per_class: int = 12,
    size: int = 128,
    seed: int = 0,
    classes: list[str] | None = None,
) -> list[Path]:
    """Write ``images/<Class>/<id>.png`` and ``masks/<Class>/<id>.png`` under ``out``.

    Returns the image paths written. Used as an ingestion *source*: ``lerenet ingest`` then
    turns it into the versioned dataset like any other source.
    """
    written = []
    for cls in classes or sorted(DEFECTS):
        if cls not in DEFECTS:
            raise ValueError(f"unknown synthetic class {cls!r}; choose from {sorted(DEFECTS)}")
        for index in range(per_class):
            image, mask = render_pair(cls, index, size, seed)
            stem = f"{cls.lower()}_{index:03d}"
            img_path = out / "images" / cls / f"{stem}.png"
            mask_path = out / "masks" / cls / f"{stem}.png"
            img_path.parent.mkdir(parents=True, exist_ok=True)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            image.save(img_path, optimize=False)
            mask.save(mask_path, optimize=False)
            written.append(img_path)
    return written
