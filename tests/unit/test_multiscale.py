"""The multi-scale LDA start (``model.lda_scales``): each scale's LDA on its own grid, averaged."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lerenet.config.schema import ModelConfig
from lerenet.model.build import build_model
from lerenet.model.complexity import dummy_episode
from lerenet.model.lerenet import encode_episode
from lerenet.model.priors import lda_logits, multiscale_lda_logits, scale_key

SIZE = 64
LEVELS = ("s4", "s8")


def lda_model(scales: list[float]) -> torch.nn.Module:
    cfg = ModelConfig(
        backbone="vgg16_bn",
        weights="random",
        prior="matching",
        residual="lda",
        prior_levels=list(LEVELS),
        lda_scales=scales,
    )
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(cfg)
    return model.eval()


def test_the_multiscale_start_is_the_mean_of_each_scales_own_lda() -> None:
    """By hand: the LDA of the 64² input on its 16² grid and that of the input (and the support
    masks) resized to 32² on its 8² grid, brought to 16² and averaged, is where the model
    starts."""
    model = lda_model([0.5, 1.0])
    query, supports, masks = dummy_episode(2, 3, SIZE, seed=4)
    with torch.no_grad():
        q, s = encode_episode(model.backbone, query, supports, per_group=False)
        full = lda_logits(q, s, masks, LEVELS, (16, 16))

        def half(x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(0, x.dim() - 4)
            out = F.interpolate(flat, size=(32, 32), mode="bilinear")
            return out.unflatten(0, x.shape[:-3])

        q2, s2 = encode_episode(model.backbone, half(query), half(supports), per_group=False)
        half_masks = F.interpolate(masks.float(), size=(32, 32)).long()  # nearest
        small = lda_logits(q2, s2, half_masks, LEVELS, (8, 8))
        small = F.interpolate(small, size=(16, 16), mode="bilinear", align_corners=True)
        expected = F.interpolate(
            (full + small) / 2, size=(SIZE, SIZE), mode="bilinear", align_corners=True
        )
        out = model(query, supports, masks)
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(out, F.interpolate(full, size=(SIZE, SIZE), mode="bilinear"))
        # the scaled levels travel in the level dicts under their own keys
        both, _ = encode_episode(
            model.backbone, query, supports, False, (0.5, 1.0), model.scaled_levels
        )
        assert set(both) == {"s4", "s8", scale_key("s4", 0.5), scale_key("s8", 0.5)}
        assert both[scale_key("s4", 0.5)].shape[-2:] == (8, 8)


def test_one_scale_is_the_single_scale_lda_exactly() -> None:
    torch.manual_seed(1)
    q = {"s4": torch.randn(2, 8, 8, 8)}
    s = {"s4": torch.randn(2, 3, 8, 8, 8)}
    masks = (torch.rand(2, 3, 32, 32) > 0.7).long()
    single = lda_logits(q, s, masks, ("s4",), (8, 8))
    assert torch.equal(multiscale_lda_logits(q, s, masks, ("s4",), (8, 8), (1.0,)), single)


def test_scales_are_distinct_and_positive_and_only_scale_the_lda_start() -> None:
    from lerenet.model.backbones.vgg16_bn import VGG16BN
    from lerenet.model.lerenet import LERENet

    off = LERENet(
        VGG16BN(levels=LEVELS), prior="matching", prior_levels=LEVELS, lda_scales=(0.5, 1.0)
    )
    assert off.scaled_levels == ()  # no LDA start: no backbone pass at other scales
    for bad in ([1.0, 1.0], [0.0, 1.0]):
        with pytest.raises(ValueError, match="distinct and > 0"):
            ModelConfig(residual="lda", lda_scales=bad)


def test_the_smoothed_start_is_the_3x3_mean_of_the_lda_on_its_grid() -> None:
    """``model.lda_smooth``: each cell of the start is the mean of its 3×3 neighbourhood of the
    multi-scale LDA (a corner of its 2×2), computed by hand here; 1 leaves the start as is;
    even widths (no centre) are refused."""
    from lerenet.model.priors import box_smooth

    torch.manual_seed(2)
    logits = torch.randn(2, 2, 6, 7)
    smooth = box_smooth(logits, 3)
    torch.testing.assert_close(smooth[..., 2, 3], logits[..., 1:4, 2:5].mean((-2, -1)))
    torch.testing.assert_close(smooth[..., 0, 0], logits[..., :2, :2].mean((-2, -1)))
    assert torch.equal(box_smooth(logits, 1), logits)
    with pytest.raises(ValueError, match="odd"):
        ModelConfig(residual="lda", lda_smooth=2)

    plain, smoothed = lda_model([0.5, 1.0]), lda_model([0.5, 1.0])
    smoothed.lda_smooth = 3
    query, supports, masks = dummy_episode(1, 2, SIZE, seed=5)
    with torch.no_grad():
        q, s = encode_episode(plain.backbone, query, supports, False, (0.5, 1.0), LEVELS)
        start = multiscale_lda_logits(q, s, masks, LEVELS, (16, 16), (0.5, 1.0))
        expected = F.interpolate(
            box_smooth(start, 3), size=(SIZE, SIZE), mode="bilinear", align_corners=True
        )
        torch.testing.assert_close(smoothed(query, supports, masks), expected)
        assert not torch.allclose(plain(query, supports, masks), expected)
