"""The served model's input contract: each wrong input is one sentence naming the array, and
the served pyfunc checks it before the model runs (a mask with no defect pixel used to come
back as a flat 0.5 map, which a 0.5 threshold reads as defect everywhere)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lerenet.evaluation.episode_input import EpisodeInputError, episode_tensors

SIZE = 40


def _episode(shots: int = 1, size: int = SIZE, batch: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    masks = np.zeros((batch, shots, size, size), np.int64)
    masks[..., 10:20, 10:20] = 1
    return {
        "query_img": rng.standard_normal((batch, 3, size, size)).astype(np.float32),
        "support_imgs": rng.standard_normal((batch, shots, 3, size, size)).astype(np.float32),
        "support_masks": masks,
    }


def _with(**changes: object) -> dict:
    episode = _episode()
    episode.update(changes)
    return episode


def _without(key: str) -> dict:
    episode = _episode()
    del episode[key]
    return episode


def _masks(value: float, dtype: type = np.int64) -> np.ndarray:
    masks = np.zeros((1, 1, SIZE, SIZE), dtype)
    masks[..., 10:20, 10:20] = value
    return masks


BAD = {
    "no defect pixel": (_with(support_masks=_masks(0)), "no defect pixel"),
    "0/255 mask": (_with(support_masks=_masks(255)), "send 1 for defect"),
    "label 2": (_with(support_masks=_masks(2)), r"holds \[2\]"),
    "soft mask": (_with(support_masks=_masks(0.7, np.float32)), r"holds \[0.7"),
    "NaN query": (_with(query_img=np.full((1, 3, SIZE, SIZE), np.nan, np.float32)), "NaN"),
    "inf support": (
        _with(support_imgs=np.full((1, 1, 3, SIZE, SIZE), np.inf, np.float32)),
        "support_imgs holds NaN or infinite",
    ),
    "support size": (
        _with(support_imgs=np.zeros((1, 1, 3, 48, 48), np.float32), support_masks=_masks(1)),
        "does not match query_img",
    ),
    "mask size": (_with(support_masks=np.ones((1, 1, 20, 20), np.int64)), "one H×W mask"),
    "no support": (
        _with(
            support_imgs=np.zeros((1, 0, 3, SIZE, SIZE), np.float32),
            support_masks=np.zeros((1, 0, SIZE, SIZE), np.int64),
        ),
        "K = 0",
    ),
    "grey query": (_with(query_img=np.zeros((1, 1, SIZE, SIZE), np.float32)), "3 channels"),
    "query without batch": (_with(query_img=np.zeros((3, SIZE, SIZE), np.float32)), "B×3×H×W"),
    "tiny": (_episode(size=16), "needs ≥ 32 px"),
    "missing masks": (_without("support_masks"), "lacks support_masks"),
    "strings": (_with(query_img=np.full((1, 3, SIZE, SIZE), "a")), "expected numbers"),
    "not a dict": ([1, 2, 3], "expected a dict"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_wrong_input_is_one_sentence(case: str) -> None:
    episode, message = BAD[case]
    with pytest.raises(EpisodeInputError, match=message):
        episode_tensors(episode)


def test_a_valid_episode_reaches_the_model_as_given() -> None:
    episode = _episode(shots=5, batch=2)
    episode["support_masks"][0, 0, :5] = 255  # ignore pixels are allowed
    query, supports, masks = episode_tensors(episode)
    assert (query.dtype, supports.dtype, masks.dtype) == (torch.float32, torch.float32, torch.long)
    assert torch.equal(masks, torch.as_tensor(episode["support_masks"]))
    assert torch.equal(supports, torch.as_tensor(episode["support_imgs"]))


def test_the_served_pyfunc_refuses_a_mask_without_defect() -> None:
    from lerenet.tracking.pyfunc import LERENetPyfunc
    from tests.unit.test_model import memory_model

    served = LERENetPyfunc.serving(memory_model(), {})
    probability = served.predict(None, _episode())
    assert probability.shape == (1, SIZE, SIZE) and np.isfinite(probability).all()
    with pytest.raises(EpisodeInputError, match="no defect pixel"):
        served.predict(None, _with(support_masks=_masks(255)), {"class_name": "Crack"})
