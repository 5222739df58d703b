"""Model behaviour: shapes, K-shot semantics, gradients, determinism, module contracts."""

from __future__ import annotations

import pytest
import torch

from lerenet.config.schema import ModelConfig
from lerenet.model.backbones import build_backbone
from lerenet.model.backbones.efficientnet_lite0 import EfficientNetLite0
from lerenet.model.backbones.resnet50 import ResNet50
from lerenet.model.backbones.vgg16_bn import VGG16BN
from lerenet.model.baseline import PrototypeBaseline
from lerenet.model.build import build_model
from lerenet.model.complexity import dummy_episode
from lerenet.model.ifm import IFM, similarity_prior
from lerenet.model.lerenet import LERENet
from lerenet.model.mpe import MPE, support_prototype
from lerenet.model.mpr import MPR

SIZE = 64


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module")
def resnet_model() -> LERENet:
    torch.manual_seed(0)
    return LERENet(ResNet50()).eval()


@pytest.mark.parametrize("backbone", ["resnet50", "vgg16_bn", "efficientnet_lite0"])
@pytest.mark.parametrize(("batch", "shots"), [(1, 1), (2, 1), (2, 5)])
def test_output_shape(backbone: str, batch: int, shots: int) -> None:
    model = LERENet(build_backbone(backbone, feature_channels=32)).eval()
    with torch.no_grad():
        out = model(*dummy_episode(batch, shots, SIZE))
    assert out.shape == (batch, 2, SIZE, SIZE)
    assert torch.isfinite(out).all()


def test_non_square_input_keeps_size(resnet_model: LERENet) -> None:
    query = torch.randn(1, 3, 72, 96)
    supports = torch.randn(1, 2, 3, 72, 96)
    masks = torch.ones(1, 2, 72, 96, dtype=torch.long)
    with torch.no_grad():
        assert resnet_model(query, supports, masks).shape == (1, 2, 72, 96)


def test_paper_parameter_counts() -> None:
    """Our reading of LERENET.md reproduces every count the specification gives."""
    resnet = ResNet50()
    model = LERENet(resnet)
    stem = sum(p.numel() for k, p in resnet.named_parameters() if not k.startswith("layer1"))
    assert stem == 112_832
    assert n_params(resnet.layer1) == 236_288
    assert n_params(model.mpr) == 657_152
    assert n_params(model.mpe) == 8_720
    assert n_params(model.ifm.fuse) == 131_328
    assert n_params(model.ifm.residual) == 1_179_648
    assert n_params(model.ifm.classifier) == 590_338


def test_identical_supports_equal_one_shot(resnet_model: LERENet) -> None:
    query, support, mask = dummy_episode(2, 1, SIZE)
    with torch.no_grad():
        one = resnet_model(query, support, mask)
        five = resnet_model(query, support.repeat(1, 5, 1, 1, 1), mask.repeat(1, 5, 1, 1))
    torch.testing.assert_close(one, five, rtol=1e-4, atol=1e-4)


def test_support_order_does_not_matter(resnet_model: LERENet) -> None:
    query, supports, masks = dummy_episode(1, 5, SIZE, seed=3)
    perm = torch.tensor([3, 0, 4, 1, 2])
    with torch.no_grad():
        a = resnet_model(query, supports, masks)
        b = resnet_model(query, supports[:, perm], masks[:, perm])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_episodes_in_a_batch_are_independent(resnet_model: LERENet) -> None:
    query, supports, masks = dummy_episode(2, 1, SIZE, seed=5)
    with torch.no_grad():
        both = resnet_model(query, supports, masks)
        first = resnet_model(query[:1], supports[:1], masks[:1])
    torch.testing.assert_close(both[:1], first, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["lerenet", "prototype"])
def test_empty_support_mask_gives_finite_output(arch: str) -> None:
    model, _ = build_model(ModelConfig(arch=arch, backbone="vgg16_bn", weights="random"))
    query, supports, _ = dummy_episode(1, 2, SIZE)
    empty = torch.zeros(1, 2, SIZE, SIZE, dtype=torch.long)
    model.train()
    out = model(query, supports, empty)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ignore_label_is_background_in_support() -> None:
    """255 (ignore) in a support mask is not defect evidence: same output as 0."""
    torch.manual_seed(0)
    model = LERENet(ResNet50()).eval()
    query, supports, masks = dummy_episode(1, 1, SIZE)
    ignored = masks.clone()
    ignored[masks == 0] = 255
    with torch.no_grad():
        torch.testing.assert_close(model(query, supports, masks), model(query, supports, ignored))


def test_gradients_reach_every_trainable_module() -> None:
    torch.manual_seed(0)
    model = LERENet(ResNet50()).train()
    query, supports, masks = dummy_episode(2, 2, SIZE)
    target = torch.randint(0, 2, (2, SIZE, SIZE))
    loss = torch.nn.functional.cross_entropy(model(query, supports, masks), target)
    loss.backward()
    missing = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert missing == []


def test_seeded_determinism_on_cpu() -> None:
    def run() -> torch.Tensor:
        torch.manual_seed(123)
        model = LERENet(VGG16BN()).train()
        query, supports, masks = dummy_episode(2, 1, SIZE, seed=1)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for _ in range(2):
            opt.zero_grad()
            model(query, supports, masks).mean().backward()
            opt.step()
        return model(query, supports, masks).detach()

    assert torch.equal(run(), run())


def test_full_depth_backbone_changes_no_output() -> None:
    """The naive baseline of the benchmark computes the deeper levels but must agree."""
    torch.manual_seed(0)
    lean = ResNet50().eval()
    full = ResNet50(full_depth=True).eval()
    full.load_state_dict(lean.state_dict(), strict=False)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(lean(x), full(x))


def test_module_shapes_match_docstrings() -> None:
    b, c, h, w = 2, 32, 8, 10
    support, query = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    mask = torch.rand(b, 1, h, w)
    assert MPR(c)(support, query).shape == (b, c, h, w)
    assert MPR(c, num_state=8, num_node=4)(support, query).shape == (b, c, h, w)
    proto = support_prototype(support, mask, "masked_mean")
    assert proto.shape == (b, c)
    assert MPE(c)(query, proto).shape == (b, c, h, w)
    prior = similarity_prior(query, support, proto, "prototype")
    assert prior.shape == (b, 1, h, w)
    assert IFM(c)(query, query, prior, size=(32, 40)).shape == (b, 2, 32, 40)
    for backbone, channels in (
        (ResNet50(), 256),
        (VGG16BN(), 128),
        (EfficientNetLite0(out_channels=48), 48),
    ):
        assert backbone(torch.randn(1, 3, 64, 64)).shape == (1, channels, 16, 16)


def test_prototype_modes_differ_and_are_validated() -> None:
    support = torch.zeros(1, 4, 2, 2)
    support[..., 0, 0] = 2.0
    mask = torch.zeros(1, 1, 2, 2)
    mask[..., 0, 0] = 1.0
    torch.testing.assert_close(support_prototype(support, mask, "gap"), torch.full((1, 4), 0.5))
    torch.testing.assert_close(
        support_prototype(support, mask, "masked_mean"), torch.full((1, 4), 2.0)
    )
    with pytest.raises(ValueError, match="unknown prototype mode"):
        support_prototype(support, mask, "median")  # type: ignore[arg-type]


def test_prototype_baseline_segments_by_similarity() -> None:
    """With an identity-like backbone the baseline labels pixels like the support's defect."""

    class Identity(torch.nn.Module):
        out_channels, levels = 3, ("s4",)

        def forward_levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"s4": x}

    model = PrototypeBaseline(Identity())
    red, blue = torch.tensor([1.0, 0.1, 0.1]), torch.tensor([0.1, 0.1, 1.0])
    img = blue[:, None, None].expand(3, 8, 8).clone()
    img[:, :4] = red[:, None, None]
    mask = torch.zeros(8, 8, dtype=torch.long)
    mask[:4] = 1
    pred = model(img[None], img[None, None], mask[None, None]).argmax(1)[0]
    assert torch.equal(pred, mask)


def test_foreground_weight_weights_defect_pixels_and_ignores_255() -> None:
    import math

    from lerenet.training.losses import SegmentationLoss

    logits = torch.tensor([2.0, 0.0]).view(1, 2, 1, 1).expand(1, 2, 1, 3).contiguous()
    target = torch.tensor([[[0, 1, 255]]])  # background, defect, ignored
    bg, defect = math.log1p(math.exp(-2.0)), math.log1p(math.exp(2.0))
    assert SegmentationLoss(1.0)(logits, target).item() == pytest.approx((bg + defect) / 2)
    assert SegmentationLoss(3.0)(logits, target).item() == pytest.approx((bg + 3 * defect) / 4)


def test_dice_term_scores_overlap_ignores_255_and_is_off_by_default() -> None:
    from lerenet.training.losses import SegmentationLoss, soft_dice

    target = torch.tensor([[[1, 1, 0, 255]]])
    sure = torch.tensor([[-9.0, -9.0, 9.0, -9.0], [9.0, 9.0, -9.0, 9.0]])[None, :, None]
    # right on the labelled pixels; the ignored pixel's confident "defect" does not count
    assert soft_dice(sure, target).item() == pytest.approx(0.0, abs=1e-3)
    wrong = -sure
    # no overlap: 1 − (0 + eps) / (1 predicted + 2 true + eps), eps = 1
    assert soft_dice(wrong, target).item() == pytest.approx(1 - 1 / 4, abs=1e-3)
    # an episode without defect, predicted empty: no Dice penalty
    assert soft_dice(sure[..., 2:3], target[..., 2:3]).item() == pytest.approx(0.0, abs=1e-3)
    ce_only = SegmentationLoss()(wrong, target)
    assert SegmentationLoss(dice_weight=0.5)(wrong, target).item() == pytest.approx(
        ce_only.item() + 0.5 * soft_dice(wrong, target).item()
    )


def test_start_anchor_pulls_trained_weights_back_to_their_start() -> None:
    from lerenet.training.losses import StartAnchor

    layer = torch.nn.Linear(3, 2)
    frozen = torch.nn.Linear(3, 2).requires_grad_(False)
    model = torch.nn.Sequential(layer, frozen)
    assert StartAnchor(model, 0.0)() == 0.0  # off: nothing added, nothing kept
    anchor = StartAnchor(model, 2.0)
    assert float(anchor()) == 0.0  # at the start
    start = layer.weight.detach().clone()
    with torch.no_grad():
        layer.weight.add_(0.5)
        frozen.weight.add_(1.0)  # not trained: not anchored
    assert float(anchor()) == pytest.approx(2.0 * 0.25 * layer.weight.numel())
    anchor().backward()
    # the gradient points away from the start, so a descent step moves back towards it
    assert torch.allclose(layer.weight.grad, 2.0 * 2 * (layer.weight - start))


@pytest.mark.parametrize(
    "cfg",
    [
        ModelConfig(backbone="resnet50", weights="random"),
        ModelConfig(backbone="vgg16_bn", weights="random", prior="matching", residual=True),
        ModelConfig(backbone="vgg16_bn", weights="random", arch="prototype"),
    ],
    ids=["faithful", "matching-residual", "baseline"],
)
def test_inference_copy_with_fused_stages_gives_the_same_logits(cfg: ModelConfig) -> None:
    from lerenet.evaluation.inference import optimize_for_inference, predict_logits

    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="random"):
        model, _ = build_model(cfg)
    model.eval()
    fast = optimize_for_inference(model)
    assert hasattr(fast.backbone, "fused_levels")  # the levels really were traced and fused
    episode = dummy_episode(2, 3, SIZE, seed=9)
    torch.testing.assert_close(
        predict_logits(fast, *episode), predict_logits(model, *episode), rtol=1e-4, atol=1e-4
    )


def memory_model(tuned: str = "off", **model: object) -> LERENet:
    """A small random-weight model with a class memory of two classes (``tuned``: its
    ``model.memory_tuned``; ``model``: other model keys)."""
    cfg = ModelConfig(
        backbone="efficientnet_lite0",
        weights="random",
        feature_channels=16,
        prior="matching",
        residual="lda",
        mask_resize="area",
        backbone_bn="frozen",
        memory=True,
        memory_classes=["Crack", "Pit"],
        memory_tuned=tuned,
        **model,
    )
    torch.manual_seed(0)
    return build_model(cfg)[0].eval()


def test_class_memory_starts_at_the_start_and_its_training_shows_in_the_output() -> None:
    """A memory model at step 0 equals the same model without memory; once its per-class
    classifier has weights, an episode routed to that class changes and one routed nowhere
    does not (new classes keep the class-agnostic output)."""
    from lerenet.model.lerenet import encode_episode

    model = memory_model()
    plain = LERENet(
        model.backbone, prior="matching", residual="lda", mask_resize="area", backbone_bn="frozen"
    )
    plain.load_state_dict(
        {k: v for k, v in model.state_dict().items() if not k.startswith("memory.")}
    )
    plain.eval()
    query, supports, masks = dummy_episode(2, 1, SIZE)
    with torch.no_grad():
        q, s = encode_episode(model.backbone, query, supports, False)
        size = (SIZE, SIZE)
        start = plain.forward_levels(q, s, masks, size)
        routed = torch.tensor([0, -1])
        assert torch.equal(model.forward_levels(q, s, masks, size, route=routed), start)
        torch.nn.init.normal_(model.memory.weight)
        after = model.forward_levels(q, s, masks, size, route=routed)
    assert not torch.allclose(after[0], start[0])  # routed to "Crack": its classifier acts
    assert torch.equal(after[1], start[1])  # routed nowhere: exactly the start
    # the IFM trunk is shared: changing it changes a routed episode's output too
    with torch.no_grad():
        torch.nn.init.normal_(model.ifm.fuse[0].weight)
        trunk_changed = model.forward_levels(q, s, masks, size, route=routed)
    assert not torch.allclose(trunk_changed[0], after[0])


def test_class_memory_routes_to_the_nearest_class_above_its_threshold() -> None:
    from lerenet.model.memory import NO_ROUTE, ClassMemory

    memory = ClassMemory(4, ("A", "B"), 3)
    memory.observe(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), torch.tensor([0, 1]))
    probe = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2, 0], [0, 0, 1.0]]), dim=1)
    # uncalibrated: nothing routes
    assert memory.route(probe).tolist() == [NO_ROUTE, NO_ROUTE]
    # calibrated: the unseen class's best cosine to A (0.5) sets A's threshold above it
    unseen = torch.tensor([[0.5, 0.1]])
    memory.calibrate({0: torch.tensor([0.9, 0.95]), 1: torch.tensor([0.9])}, unseen)
    assert memory.threshold[0] > 0.5 and memory.threshold[1] >= 0.9 - 1e-6
    assert memory.route(probe).tolist() == [0, NO_ROUTE]
    far = torch.tensor([[0.6, 0.8, 0.0]])  # nearest is B (0.8) but below B's threshold
    assert memory.route(far).tolist() == [NO_ROUTE]


def test_the_backbone_registry_is_its_modules() -> None:
    """Adding a backbone is one module in lerenet/model/backbones/ (plus its test): the
    registry, the configuration and the builder all read the package's modules."""
    from pathlib import Path

    import lerenet.model.backbones as registry
    from lerenet.config.schema import ConfigError, load_params

    modules = sorted(
        p.stem
        for p in Path(registry.__file__).parent.glob("*.py")
        if p.stem not in ("__init__", "base")
    )
    assert list(registry.names()) == modules and "efficientnet_lite0" in modules
    for name in modules:
        backbone = build_backbone(name, feature_channels=16, levels=("s8",))
        out = backbone.forward_levels(torch.zeros(1, 3, 64, 64))
        assert set(out) == {"s4", "s8"} and out["s4"].shape[-1] == 16, name
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'; expected one of"):
        build_backbone("resnet18")
    with pytest.raises(ConfigError, match="unknown backbone 'resnet18'"):
        load_params(Path("params.yaml"), {"model.backbone": "resnet18"})


def test_models_saved_before_levels_had_their_name_still_load(tmp_path) -> None:
    """Checkpoints, registered models and params files say ``prior_stages``; it is the older
    name of ``model.prior_levels`` and means the same."""
    from lerenet.config.schema import ModelConfig
    from lerenet.model.build import build_model
    from lerenet.training.checkpoint import load_model_file, save_model_file

    assert ModelConfig.model_validate({"prior_stages": ["s16", "s4"]}).prior_levels == ["s4", "s16"]
    with pytest.raises(ValueError, match="prior_levels only"):
        ModelConfig.model_validate({"prior_stages": ["s4"], "prior_levels": ["s8"]})
    cfg = ModelConfig(backbone="vgg16_bn", weights="random", prior="matching", prior_levels=["s8"])
    model, _ = build_model(cfg)
    path = tmp_path / "old.pt"
    save_model_file(model, cfg, path, {"step": 0})
    blob = torch.load(path, weights_only=True)
    blob["model_config"]["prior_stages"] = blob["model_config"].pop("prior_levels")
    torch.save(blob, path)
    loaded, meta = load_model_file(path)
    assert loaded.prior_levels == ("s8",) or list(loaded.prior_levels) == ["s8"]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in loaded.state_dict().items())
