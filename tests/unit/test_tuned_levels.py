"""The class memory's tuned copy of the backbone's deeper stages (model.memory_tuned)."""

from __future__ import annotations

import pytest
import torch

from lerenet.model.backbones import build_backbone
from lerenet.model.complexity import dummy_episode
from lerenet.model.lerenet import encode_episode
from lerenet.model.tuned_levels import TunedLevels
from lerenet.training.optim import param_groups
from tests.unit.test_model import memory_model

SIZE = 64


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50", "vgg16_bn"])
def test_an_untrained_copy_recomputes_the_backbones_own_levels(name: str) -> None:
    """Each backbone's ``level_stage`` is exactly the layers between two levels: the copy run
    from the cached s4 map gives the pretrained s8 and s16 maps bit for bit."""
    torch.manual_seed(0)
    backbone = build_backbone(
        name, deep_stem=True, feature_channels=16, full_depth=False, levels=("s4", "s8", "s16")
    ).eval()
    tuned = TunedLevels(backbone, "s8", "s16").eval()
    with torch.no_grad():
        levels = backbone.forward_levels(torch.randn(2, 3, SIZE, SIZE))
        out = tuned(levels)
    assert list(out) == ["s8", "s16"]
    for level in out:
        assert torch.equal(out[level], levels[level])
    assert tuned.channels == backbone.level_channels["s8"] + backbone.level_channels["s16"]


def test_the_tuned_copy_starts_at_the_start_and_only_named_classes_read_it() -> None:
    """At step 0 the model is its start; once the memory has weights, changing the tuned copy
    changes an episode routed to a training class and leaves an unnamed one (a new class) and
    the shared backbone as they were."""
    model = memory_model("s8")
    plain = memory_model("off")
    query, supports, masks = dummy_episode(2, 1, SIZE)
    route = torch.tensor([1, -1])
    with torch.no_grad():
        q, s = encode_episode(model.backbone, query, supports, False)
        size = (SIZE, SIZE)
        start = plain.forward_levels(q, s, masks, size)
        assert torch.equal(model.forward_levels(q, s, masks, size, route=route), start)
        torch.nn.init.normal_(model.memory.weight)
        before = model.forward_levels(q, s, masks, size, route=route)
        backbone_before = [p.clone() for p in model.backbone.parameters()]
        for param in model.tuned.parameters():
            param.add_(torch.randn_like(param))
        after = model.forward_levels(q, s, masks, size, route=route)
    assert not torch.allclose(after[0], before[0])
    assert torch.equal(after[1], start[1])
    for old, new in zip(backbone_before, model.backbone.parameters(), strict=True):
        assert torch.equal(old, new)


def test_the_tuned_copy_trains_at_its_own_lr_and_keeps_its_batchnorm_statistics() -> None:
    model = memory_model("s16")
    groups = {g["name"]: g for g in param_groups(model, 0.01, 10.0, 0.0, 0.1)}
    assert set(groups) == {"head", "tuned"}  # backbone_mult 0: the backbone is frozen
    assert groups["tuned"]["lr"] == pytest.approx(0.001)
    tuned_ids = {id(p) for p in model.tuned.parameters()}
    assert {id(p) for p in groups["tuned"]["params"]} == tuned_ids
    assert not any(p.requires_grad for p in model.backbone._blocks.parameters())
    model.train()
    norms = [m for m in model.tuned.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    # the loss reaches the copy through a routed episode
    query, supports, masks = dummy_episode(2, 1, SIZE)
    with torch.no_grad():
        torch.nn.init.normal_(model.memory.weight)
    logits = model(query, supports, masks, route=torch.tensor([0, 1]))
    logits.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.tuned.parameters())


def test_tuning_a_level_the_backbone_lacks_is_refused() -> None:
    backbone = build_backbone(
        "efficientnet_lite0", deep_stem=True, feature_channels=16, full_depth=False, levels=()
    )
    with pytest.raises(ValueError, match="cannot tune"):
        TunedLevels(backbone, "s4", "s16")
