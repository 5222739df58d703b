"""Decoding images and masks safely, and the one rule that binarises masks.

Mask rule (used by ingestion, validation and loading alike): a pixel is defect when its grey
value is ≥ 128, background otherwise; stored masks hold exactly 0 and 255. This matches how
../shared/datasets was built from grey source masks. A mask with no pixel ≥ 128 but exactly two
grey levels, 0 and one other, is read as that level = defect: the 0/1 label maps, indexed
(palette) masks and coloured masks that labelling tools export, which the threshold alone would
read as empty and quarantine (a two-level mask has one reading). Any other mask with no pixel
≥ 128 is empty, and ``empty_mask_reason`` says which values it holds.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image

MASK_THRESHOLD = 128


class DecodeError(ValueError):
    """An image that cannot be used: unreadable, truncated or too large."""


def open_image(path: Path, max_pixels: int) -> Image.Image:
    """Fully decode an image, refusing files over ``max_pixels`` before decoding them.

    The pixel count is read from the header first, so a decompression bomb is rejected without
    allocating its pixels; ``load()`` then forces a full decode so truncated files fail here and
    not in the middle of training.
    """
    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise DecodeError(
                    f"{width}×{height} = {width * height:,} pixels exceeds the limit "
                    f"{max_pixels:,} (data.max_pixels)"
                )
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
            return img.copy()
    except DecodeError:
        raise
    except Image.DecompressionBombError as err:
        # PIL refuses images over twice its own limit in Image.open, before our header check
        raise DecodeError(f"over the pixel limit {max_pixels:,} (data.max_pixels): {err}") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as err:
        raise DecodeError(f"cannot decode: {err}") from err


def to_rgb_array(img: Image.Image) -> np.ndarray:
    """H×W×3 uint8 (grey images are replicated to three channels)."""
    return np.asarray(img.convert("RGB"))


def mask_grey(img: Image.Image) -> np.ndarray:
    """The mask's grey levels (H×W uint8), what the mask rule reads: palette masks through
    their colours, 16-bit masks clipped at 255, colour masks by luminance."""
    return np.asarray(img.convert("L"))


def defect_pixels(grey: np.ndarray) -> np.ndarray:
    """The mask rule (module docstring) on grey levels: H×W bool, True = defect."""
    high = grey >= MASK_THRESHOLD
    if high.any():
        return high
    levels = np.unique(grey)  # only reached by masks the threshold alone reads as empty
    if len(levels) == 2 and levels[0] == 0:
        return grey > 0
    return high


def empty_mask_reason(grey: np.ndarray) -> str:
    """Why the rule finds no defect in ``grey``, with the values it holds: what a user needs
    to re-export it (a blank mask, or a label map with several non-zero values)."""
    levels = np.unique(grey)
    shown = ", ".join(str(int(v)) for v in levels[:6]) + (", …" if len(levels) > 6 else "")
    if len(levels) == 1:
        return f"mask has no defect pixel (every pixel is {int(levels[0])})"
    return (
        f"mask has no defect pixel: its grey values are {shown} (defect is grey ≥ "
        f"{MASK_THRESHOLD}, or the one non-zero value of a mask with two values)"
    )


def binarize_mask(img: Image.Image) -> tuple[np.ndarray, bool]:
    """H×W uint8 of 0/255 by the mask rule, and whether the input had other values."""
    grey = mask_grey(img)
    binary = np.where(defect_pixels(grey), 255, 0).astype(np.uint8)
    was_grey = bool(np.any((grey != 0) & (grey != 255)))
    return binary, was_grey


def _labels(img: Image.Image) -> np.ndarray:
    return defect_pixels(mask_grey(img)).astype(np.uint8)


def load_label(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """A mask as labels: 1 = defect, 0 = background (H×W uint8).

    ``max_pixels``: decode through ``open_image`` (DecodeError for an unreadable or over-limit
    file), for files from outside the dataset (predict); validated dataset files skip it.
    """
    if max_pixels is not None:
        return _labels(open_image(path, max_pixels))
    with Image.open(path) as img:
        return _labels(img)


def load_rgb(path: Path, max_pixels: int | None = None) -> np.ndarray:
    """H×W×3 uint8; ``max_pixels`` as in ``load_label``."""
    if max_pixels is not None:
        return to_rgb_array(open_image(path, max_pixels))
    with Image.open(path) as img:
        return to_rgb_array(img)
