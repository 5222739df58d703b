"""The training-free matching (priors, baseline, residual start) and the backbone BN modes."""

from __future__ import annotations

import pytest
import torch

from lerenet.config.schema import ModelConfig
from lerenet.model.backbones.resnet50 import ResNet50
from lerenet.model.backbones.vgg16_bn import VGG16BN
from lerenet.model.baseline import PrototypeBaseline
from lerenet.model.build import build_model
from lerenet.model.complexity import dummy_episode
from lerenet.model.lerenet import LERENet
from lerenet.model.priors import matching_maps, max_cosine, prototype_cosine, support_weights

SIZE = 64


def two_colour_episode(shots: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Feature maps where the defect is 'red' and the background 'blue', at 8×8."""
    red, blue = torch.tensor([1.0, 0.1, 0.1]), torch.tensor([0.1, 0.1, 1.0])
    img = blue[:, None, None].expand(3, 8, 8).clone()
    img[:, :3] = red[:, None, None]
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:3] = 1
    return (
        img[None],
        img[None, None].repeat(1, shots, 1, 1, 1),
        mask[None, None].repeat(1, shots, 1, 1),
    )


def test_prototype_and_max_cosine_find_the_support_colour() -> None:
    query, supports, masks = two_colour_episode()
    fg, bg = support_weights(masks, (8, 8))
    for sim in (prototype_cosine(query, supports, fg, bg), max_cosine(query, supports, fg, bg)):
        assert sim.shape == (1, 2, 8, 8)
        assert torch.equal(sim.argmax(1)[0], masks[0, 0])
        assert sim.max() <= 1 + 1e-6 and sim.min() >= -1 - 1e-6


def test_five_shot_prototype_pools_pixels_not_positions() -> None:
    """Supports whose defects sit at different positions still give the defect's own
    prototype: pixels are pooled over shots, not masked maps averaged position by position."""
    query, supports, masks = two_colour_episode(shots=2)
    supports[:, 1] = torch.roll(supports[:, 1], shifts=4, dims=-2)
    masks[:, 1] = torch.roll(masks[:, 1], shifts=4, dims=-2)
    fg, bg = support_weights(masks, (8, 8))
    sim = prototype_cosine(query, supports, fg, bg)
    torch.testing.assert_close(sim[:, 1].max(), torch.tensor(1.0))
    assert torch.equal(
        sim.argmax(1)[0], torch.zeros(8, 8, dtype=torch.long).index_fill(0, torch.arange(3), 1)
    )


def test_empty_side_gives_finite_maps() -> None:
    query, supports, masks = two_colour_episode()
    fg, bg = support_weights(torch.zeros_like(masks), (8, 8))
    maps = torch.cat(
        [prototype_cosine(query, supports, fg, bg), max_cosine(query, supports, fg, bg)], 1
    )
    assert torch.isfinite(maps).all()
    assert torch.all(maps[:, 3] == -1)  # no defect pixel to match: the lowest similarity


def test_matching_maps_shape_and_order_invariance() -> None:
    torch.manual_seed(0)
    levels_q = {"s4": torch.randn(2, 8, 16, 16), "s8": torch.randn(2, 16, 8, 8)}
    levels_s = {"s4": torch.randn(2, 3, 8, 16, 16), "s8": torch.randn(2, 3, 16, 8, 8)}
    masks = (torch.rand(2, 3, SIZE, SIZE) > 0.6).long()
    maps = matching_maps(levels_q, levels_s, masks, ("s4", "s8"), (16, 16))
    assert maps.shape == (2, 9, 16, 16)  # 4 cosines per level + the support LDA
    perm = torch.tensor([2, 0, 1])
    shuffled = {k: v[:, perm] for k, v in levels_s.items()}
    torch.testing.assert_close(  # float sums in another order: 1e-4
        maps,
        matching_maps(levels_q, shuffled, masks[:, perm], ("s4", "s8"), (16, 16)),
        rtol=1e-4,
        atol=1e-4,
    )


def test_residual_lerenet_starts_exactly_at_the_baseline() -> None:
    """With ``residual`` the untrained head adds zero: its output is the baseline's."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone="vgg16_bn",
        weights="random",
        prior="matching",
        residual=True,
        prior_levels=["s4", "s8"],
    )
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(cfg)
    baseline = PrototypeBaseline(model.backbone, ("s4", "s8")).eval()
    episode = dummy_episode(2, 3, SIZE, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(*episode), baseline(*episode))


def test_prototype_baseline_has_no_trainable_head() -> None:
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(ModelConfig(arch="prototype", backbone="vgg16_bn", weights="random"))
    assert all(name.startswith("backbone.") for name, _ in model.named_parameters())


def test_prior_levels_are_built_and_validated() -> None:
    backbone = ResNet50(levels=("s16",))
    assert backbone.levels == ("s4", "s16") and hasattr(backbone, "layer3")
    assert not hasattr(ResNet50(), "layer2")  # the faithful model builds stride 4 only
    with pytest.raises(ValueError, match="without the prior level"):
        LERENet(VGG16BN(), prior="matching", prior_levels=("s4", "s8"))
    with pytest.raises(ValueError, match="repeats"):
        ModelConfig(prior_levels=["s4", "s4"])
    assert ModelConfig(prior_levels=["s16", "s4"]).prior_levels == ["s4", "s16"]


def _bn_stats(model: torch.nn.Module) -> list[torch.Tensor]:
    return [
        m.running_mean.clone()
        for m in model.backbone.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    ]


def test_backbone_bn_modes_differ_in_training_only() -> None:
    """per_group (the authors') and joint see different batch statistics and frozen keeps the
    running statistics; in eval mode the three give the same output."""
    episode = dummy_episode(2, 2, SIZE, seed=7)
    outputs, stats = {}, {}
    for mode in ("per_group", "joint", "frozen"):
        torch.manual_seed(0)
        model = LERENet(VGG16BN(), backbone_bn=mode)
        with torch.no_grad():
            outputs[mode] = model.eval()(*episode)
            before = _bn_stats(model)
            model.train()(*episode)
        stats[mode] = _bn_stats(model)
        changed = [not torch.equal(a, b) for a, b in zip(before, stats[mode], strict=True)]
        assert not any(changed) if mode == "frozen" else all(changed)
    torch.testing.assert_close(outputs["joint"], outputs["per_group"])
    torch.testing.assert_close(outputs["joint"], outputs["frozen"])
    assert not all(
        torch.allclose(a, b) for a, b in zip(stats["per_group"], stats["joint"], strict=True)
    )


def test_support_lda_separates_what_the_support_marks() -> None:
    from lerenet.model.priors import support_lda

    query, supports, masks = two_colour_episode(shots=2)
    levels_q, levels_s = {"s4": query}, {"s4": supports}
    score = support_lda(levels_q, levels_s, masks, ("s4",), (8, 8))
    assert score.shape == (1, 1, 8, 8)
    assert torch.equal((score[0, 0] > 0).long(), masks[0, 0])
    # +2 at the defect mean, -2 at the background mean, by construction
    torch.testing.assert_close(score[0, 0, 0, 0], torch.tensor(2.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(score[0, 0, 7, 7], torch.tensor(-2.0), atol=1e-3, rtol=0)
    empty = support_lda(levels_q, levels_s, torch.zeros_like(masks), ("s4",), (8, 8))
    assert torch.equal(empty, torch.zeros_like(empty))


def test_support_lda_is_order_invariant_and_batched() -> None:
    from lerenet.model.priors import support_lda

    torch.manual_seed(1)
    levels_q = {"s4": torch.randn(3, 8, 16, 16), "s8": torch.randn(3, 16, 8, 8)}
    levels_s = {"s4": torch.randn(3, 4, 8, 16, 16), "s8": torch.randn(3, 4, 16, 8, 8)}
    masks = (torch.rand(3, 4, 32, 32) > 0.7).long()
    score = support_lda(levels_q, levels_s, masks, ("s4", "s8"), (16, 16))
    perm = torch.tensor([3, 1, 0, 2])
    shuffled = {k: v[:, perm] for k, v in levels_s.items()}
    torch.testing.assert_close(
        score,
        support_lda(levels_q, shuffled, masks[:, perm], ("s4", "s8"), (16, 16)),
        rtol=1e-4,
        atol=1e-4,
    )
    single = support_lda(
        {k: v[1:2] for k, v in levels_q.items()},
        {k: v[1:2] for k, v in levels_s.items()},
        masks[1:2],
        ("s4", "s8"),
        (16, 16),
    )
    torch.testing.assert_close(score[1:2], single, rtol=1e-4, atol=1e-4)


def test_lda_residual_lerenet_starts_at_the_support_lda() -> None:
    import torch.nn.functional as F

    from lerenet.model.lerenet import encode_episode
    from lerenet.model.priors import lda_logits

    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone="vgg16_bn",
        weights="random",
        prior="matching",
        residual="lda",
        prior_levels=["s4", "s8"],
    )
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(cfg)
    model.eval()
    episode = dummy_episode(2, 3, SIZE, seed=4)
    with torch.no_grad():
        q, s = encode_episode(model.backbone, episode[0], episode[1], per_group=False)
        start = lda_logits(q, s, episode[2], ("s4", "s8"), (16, 16), shrinkage=3.0)
        expected = F.interpolate(start, size=(SIZE, SIZE), mode="bilinear", align_corners=True)
        torch.testing.assert_close(model(*episode), expected)


def test_max_cosine_in_blocks_equals_the_masked_maxima(monkeypatch) -> None:
    """The blocked product with the side as an extra channel gives, per query position, the
    best cosine among that side's support pixels and -1 for an empty side, as a direct
    masked maximum over the whole matrix does; blocks of a few rows change nothing."""
    from lerenet.model import priors

    torch.manual_seed(0)
    query, supports = torch.randn(2, 6, 5, 7), torch.randn(2, 3, 6, 5, 7)
    fg = (torch.rand(2, 3, 1, 5, 7) > 0.8).float()
    fg[1] = 0  # the second episode's supports show no defect
    bg = 1 - fg
    q = torch.nn.functional.normalize(query.flatten(2), dim=1).transpose(1, 2)
    s = torch.nn.functional.normalize(supports.flatten(3), dim=2).transpose(1, 2).flatten(2)
    cos = q @ s  # B×35×105
    expected = [
        torch.where(priors.side_pixels(w)[:, None], cos, -1.0).amax(2).view(2, 1, 5, 7)
        for w in (bg, fg)
    ]
    monkeypatch.setattr(priors, "COSINE_BLOCK", 1)  # blocks of 8 query positions
    blocked = max_cosine(query, supports, fg, bg)
    torch.testing.assert_close(blocked, torch.cat(expected, 1))
    assert torch.all(blocked[1, 1] == -1)


def test_a_defect_smaller_than_a_feature_cell_still_counts() -> None:
    """A 2×2-pixel pit on a 64×64 support covers 1/16 of an 8×8 cell: area resizing keeps it
    (bilinear sampling would miss it), and its best cell stands for the defect."""
    from lerenet.model.priors import side_pixels, support_lda

    masks = torch.zeros(1, 1, 64, 64, dtype=torch.long)
    masks[0, 0, 30:32, 30:32] = 1
    fg, bg = support_weights(masks, (8, 8), area=True)
    assert 0 < fg.max() < 0.5 and side_pixels(fg).sum() >= 1
    sampled = torch.nn.functional.interpolate(
        (masks == 1).float(), size=(8, 8), mode="bilinear", align_corners=True
    )
    assert sampled.max() == 0  # what the authors' bilinear masking sees of the same pit
    torch.manual_seed(0)
    query, supports = torch.randn(1, 8, 8, 8), torch.randn(1, 1, 8, 8, 8)
    assert torch.all(max_cosine(query, supports, fg, bg)[:, 1] > -1)
    score = support_lda({"s4": query}, {"s4": supports}, masks, ("s4",), (8, 8))
    assert score.abs().sum() > 0


def test_conjugate_gradients_match_a_direct_solve() -> None:
    from lerenet.model.priors import solve_spd

    torch.manual_seed(0)
    basis = torch.linalg.qr(torch.randn(3, 176, 176)).Q
    spectrum = torch.linspace(1.0, 60.0, 176)  # condition 60, above what LDA meets on defects9
    matrix = basis @ torch.diag_embed(spectrum.expand(3, -1)) @ basis.transpose(1, 2)
    rhs = torch.randn(3, 176)
    direct = torch.linalg.solve(matrix.double(), rhs.double().unsqueeze(-1)).squeeze(-1)
    got = solve_spd(matrix, rhs).double()
    assert ((got - direct).norm(dim=1) / direct.norm(dim=1)).max() < 1e-4


def test_area_resize_pools_each_stage_cell_and_exports() -> None:
    from lerenet.model.priors import area_resize

    mask = torch.zeros(1, 1, 200, 200)
    mask[..., 100:102, 100:102] = 1  # a 2×2 pit
    for cells in (50, 25, 13):  # EfficientNet's s4, s8, s16 grids at 200×200
        pooled = area_resize(mask, (cells, cells))
        assert pooled.shape[-2:] == (cells, cells)
        assert pooled.max() > 0  # the pit is seen at every level
    torch.testing.assert_close(area_resize(mask, (50, 50)).sum() * 16, mask.sum())


@pytest.mark.parametrize("shots,scales", [(1, [1.0]), (3, [1.0]), (1, [0.625, 0.8, 1.0, 1.2])])
def test_the_improved_model_exports_to_onnx(tmp_path, shots: int, scales: list[float]) -> None:
    pytest.importorskip("onnxruntime")
    from lerenet.config.schema import Params
    from lerenet.model.onnx import export_onnx, parity

    cfg = Params.model_validate(
        {
            "recipe": "improved",
            "model": {"backbone": "vgg16_bn", "weights": "random", "lda_scales": scales},
        }
    ).model
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(cfg)
    with torch.no_grad():  # a head that is not zero, so its path is checked too
        model.ifm.classifier[-1].weight.normal_(0, 0.01)
    path = export_onnx(model, tmp_path / "m.onnx", SIZE, shots=shots)
    worst = parity(model, path, [dummy_episode(1, shots, SIZE, seed=s) for s in range(2)])
    assert worst < 1e-3
