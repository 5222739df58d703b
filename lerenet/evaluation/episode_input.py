"""The served model's input contract, checked before any array reaches the model.

An MLflow client sends ``query_img`` B×3×H×W, ``support_imgs`` B×K×3×H×W and ``support_masks``
B×K×H×W (1 defect, 0 background, 255 ignore). Unchecked, the wrong input gave a plausible-looking
answer or a torch internal error: support masks with no pixel equal to 1 (all zero, 0/255
masks, values 2 or 0.7) came back as a flat 0.5 probability, which a ≥ 0.5 threshold reads as
defect everywhere; a NaN or infinite pixel made every output NaN; a size or batch mismatch, no
support or an image under 16 px raised from inside a convolution. Each is now one sentence that
names the array and what to send instead (``EpisodeInputError``, a ValueError).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

KEYS = ("query_img", "support_imgs", "support_masks")
MASK_VALUES = (0, 1, 255)
# the stride-16 level needs at least one cell at the smallest of the start's input scales
# (0.625): 32 px leaves it two
MIN_SIZE = 32


class EpisodeInputError(ValueError):
    """An episode the model cannot answer: the message says which array and why."""


def _array(model_input: Mapping[str, Any], key: str, ndim: int, layout: str) -> np.ndarray:
    value = np.asarray(model_input[key])
    if value.ndim != ndim:
        raise EpisodeInputError(f"{key} has shape {value.shape}: expected {layout}")
    if not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise EpisodeInputError(f"{key} holds {value.dtype} values: expected numbers")
    return value


def _check_masks(masks: np.ndarray) -> None:
    """Mask values in {0, 1, 255}, and a defect pixel among each episode's supports."""
    if masks.size and not np.isin(masks, MASK_VALUES).all():
        found = ", ".join(f"{v:g}" for v in np.unique(masks[~np.isin(masks, MASK_VALUES)])[:4])
        raise EpisodeInputError(
            f"support_masks holds [{found}]: expected 1 (defect), 0 (background) or 255 (ignore)"
        )
    empty = [i for i in range(masks.shape[0]) if not (masks[i] == 1).any()]
    if empty:
        raise EpisodeInputError(
            f"support_masks of episode(s) {empty[:5]} have no defect pixel (value 1): the model "
            "would have nothing to look for (a 0/255 mask reads 255 as ignore: send 1 for defect)"
        )


def episode_tensors(model_input: Mapping[str, Any]) -> tuple[torch.Tensor, ...]:
    """(query, supports, masks) as the model takes them, or an ``EpisodeInputError``."""
    if not isinstance(model_input, Mapping):
        raise EpisodeInputError(
            f"the input is a {type(model_input).__name__}: expected a dict of {', '.join(KEYS)}"
        )
    missing = [key for key in KEYS if key not in model_input]
    if missing:
        raise EpisodeInputError(
            f"the input lacks {', '.join(missing)} (it needs {', '.join(KEYS)})"
        )
    query = _array(model_input, "query_img", 4, "B×3×H×W")
    supports = _array(model_input, "support_imgs", 5, "B×K×3×H×W")
    masks = _array(model_input, "support_masks", 4, "B×K×H×W")
    batch, _, height, width = query.shape
    if query.shape[1] != 3 or supports.shape[2] != 3:
        raise EpisodeInputError(
            f"query_img {query.shape} and support_imgs {supports.shape} must have 3 channels "
            "(RGB, normalised with the model's input_normalization)"
        )
    if supports.shape[1] == 0:
        raise EpisodeInputError("support_imgs holds no support (K = 0): give 1 to 5")
    if supports.shape[0] != batch or supports.shape[3:] != (height, width):
        raise EpisodeInputError(
            f"support_imgs {supports.shape} does not match query_img {query.shape}: the same "
            "batch size and image size (resize the supports as the query)"
        )
    if masks.shape != supports.shape[:2] + supports.shape[3:]:
        raise EpisodeInputError(
            f"support_masks {masks.shape} does not match support_imgs {supports.shape}: one "
            "H×W mask per support image"
        )
    if min(height, width) < MIN_SIZE:
        raise EpisodeInputError(f"images of {height}×{width} px: the model needs ≥ {MIN_SIZE} px")
    for key, images in (("query_img", query), ("support_imgs", supports)):
        if not np.isfinite(images).all():
            raise EpisodeInputError(f"{key} holds NaN or infinite values")
    _check_masks(masks)
    return (
        torch.as_tensor(query, dtype=torch.float32),
        torch.as_tensor(supports, dtype=torch.float32),
        torch.as_tensor(masks, dtype=torch.long),
    )
