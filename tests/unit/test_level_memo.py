"""Evaluation computes each image's backbone levels once: the same predictions as running the
whole model on every episode, within a memory budget, and one model per memo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lerenet.training.level_memo import LevelMemo


@pytest.mark.parametrize(
    "overrides",
    [
        {},  # the authors' configuration (tiny params' recipe)
        {
            "recipe": "improved",
            "model.lda_scales": [0.75, 1.0],
            "model.prior_levels": ["s4", "s8"],
        },
        {"model.arch": "prototype", "model.prior_levels": ["s4", "s8"]},
    ],
    ids=["paper", "improved-multiscale", "baseline"],
)
def test_memoised_evaluation_predicts_what_the_whole_model_does(
    tiny_project: Path, overrides: dict
) -> None:
    from lerenet.config.schema import load_params
    from lerenet.evaluation.scoring import episode_dataset, predict_episodes
    from lerenet.model.build import build_model

    params = load_params("params.yaml", overrides)
    model, _ = build_model(params.model)
    cpu = torch.device("cpu")
    for shots in (1, 5):
        dataset = episode_dataset(params, model, "test", shots, 0)
        whole = predict_episodes(model, dataset, cpu, batch_size=3, reuse_levels=False)
        memo = LevelMemo()
        memoised = predict_episodes(model, dataset, cpu, batch_size=3, memo=memo)
        np.testing.assert_array_equal(memoised.stats, whole.stats)
        np.testing.assert_array_equal(memoised.areas, whole.areas)
        images = {p for ep in dataset.episodes for p in (ep.query, *ep.supports)}
        assert memo.misses == len(images)  # the backbone ran once per distinct image
        reads = sum(1 + len(ep.supports) for ep in dataset.episodes)
        assert memo.hits + memo.misses < reads  # and episodes shared them


class Counting(nn.Module):
    """Levels = the image itself (two 'levels'); counts the images it was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def image_levels(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        self.seen += len(images)
        return {"a": images.clone(), "b": images.mean(1, keepdim=True)}


def _images(n: int) -> tuple[list[str], torch.Tensor]:
    return [f"img{i}" for i in range(n)], torch.arange(n * 3 * 4.0).reshape(n, 3, 2, 2)


def test_memo_stays_within_its_budget_and_still_returns_every_image() -> None:
    model = Counting()
    paths, images = _images(6)
    one = 3 * 4 * 4 + 1 * 4 * 4  # bytes of one image's levels (float32)
    memo = LevelMemo(max_bytes=2 * one)  # room for two images, a batch has six
    out = memo.levels(model, paths + paths[:2], torch.cat([images, images[:2]]))
    torch.testing.assert_close(out["a"], torch.cat([images, images[:2]]))
    assert model.seen == 6  # the repeated two were computed once
    assert len(memo) == 2 and memo.nbytes <= memo.max_bytes
    memo.levels(model, paths[-2:], images[-2:])  # the two most recent are kept
    assert model.seen == 6 and memo.hits == 2
    memo.levels(model, paths[:1], images[:1])  # the oldest was evicted
    assert model.seen == 7


def test_a_memo_refuses_a_second_backbone_and_serves_models_that_share_one() -> None:
    """Levels are a backbone's: a model with another backbone is refused, a model sharing the
    same frozen backbone object (a trained model and its start) is served from the memo."""
    paths, images = _images(2)
    memo = LevelMemo()
    memo.levels(Counting(), paths, images)
    with pytest.raises(ValueError, match="one backbone"):
        memo.levels(Counting(), paths, images)

    class Head(nn.Module):
        def __init__(self, backbone: nn.Module) -> None:
            super().__init__()
            self.backbone = backbone

        def image_levels(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
            return self.backbone.image_levels(images)

    shared = Counting()
    memo = LevelMemo()
    memo.levels(Head(shared), paths, images)
    memo.levels(Head(shared), paths, images)  # another model, the same backbone
    assert shared.seen == 2 and memo.hits == 2
    with pytest.raises(ValueError, match="one backbone"):
        memo.levels(Head(Counting()), paths, images)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["improved", "paper"])
def test_validation_rounds_share_levels_only_while_the_backbone_is_frozen(
    tiny_project: Path, monkeypatch: pytest.MonkeyPatch, recipe: str
) -> None:
    import lerenet.training.session
    from lerenet.config.schema import load_params
    from lerenet.training.loop import train

    made: list[LevelMemo] = []

    class Recorded(LevelMemo):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(lerenet.training.session, "LevelMemo", Recorded)
    overrides = {"recipe": recipe, "model.prior_levels": ["s4", "s8"]}
    if recipe == "improved":
        overrides |= {"train.synthetic_classes": 0, "train.cache_copies": 2}
    result = train(load_params("params.yaml", overrides), show_progress=False)
    rounds = [h for h in result.history if h["val_miou"] is not None]
    if recipe == "improved":  # frozen: one memo; rounds after the first cost no backbone pass
        assert len(rounds) == 3 and len(made) == 1
        assert made[0].misses > 0 and made[0].hits >= 2 * made[0].misses
    else:  # the backbone trains: every round computes its own levels (predict_episodes' memo)
        assert len(rounds) == 2 and made == []
