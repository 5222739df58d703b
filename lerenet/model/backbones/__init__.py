"""Backbones as named levels, one module each: the registry.

Every module of this package but ``base`` is one backbone, named as the module
(``model.backbone``), with a ``build(*, deep_stem, feature_channels, full_depth, levels)``.
Adding a backbone is one module here plus its test: the name is found by listing the
package (no torch import: the configuration validates names with it).

LERENet's head reads the stride-4 level (LERENET.md, "Backbone"). Every backbone names its
levels by stride (``s4``, ``s8``, ``s16``) and builds only the layers up to the deepest level
asked for: ``levels`` lists the pretrained levels the model reads besides the head's own (the
training-free matching prior reads deeper ones); by default only the stride-4 level is built
and run. ``full_depth=True`` builds and runs every level and discards what is not asked for,
as the authors' code does; it exists only as the naive baseline of ``bench/model_speed.py``
and changes no output.

``forward_levels`` maps B×3×H×W → {level name: B×C_s×⌈H/s⌉×⌈W/s⌉} (pretrained features only);
``head_features`` turns those into the head's B×C×⌈H/4⌉×⌈W/4⌉ map (``out_channels`` C), which
for EfficientNet adds a new projection layer. ``forward`` is the two in a row. Keeping the
pretrained levels apart from the head's input is what lets a frozen backbone's features be
cached once per image (``lerenet/training/feature_cache.py``). Every backbone declares the input
normalisation its pretrained weights expect (``mean``/``std``). Module names follow the
checkpoint formats they load (``conv1``/``layer1`` for ResNet, ``features.N`` for VGG,
``_blocks.N`` for EfficientNet) so that weight loading is a key rename, not a reshuffle.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # not at run time: listing the names must not import torch
    from lerenet.model.backbones.base import MultiLevelBackbone

__all__ = ["build_backbone", "names"]


@cache
def names() -> tuple[str, ...]:
    """Every registered backbone: the modules of this package but ``base``."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base"))


def module_of(name: str) -> ModuleType:
    if name not in names():
        raise ValueError(f"unknown backbone {name!r}; expected one of {', '.join(names())}")
    return importlib.import_module(f"{__name__}.{name}")


def build_backbone(
    name: str,
    *,
    deep_stem: bool = True,
    feature_channels: int = 256,
    full_depth: bool = False,
    levels: tuple[str, ...] = (),
) -> MultiLevelBackbone:
    """Build an (untrained) backbone by name; weights are loaded by ``weights.py``.

    ``levels``: pretrained levels the model reads besides the head's (``s8``, ``s16``).
    """
    return module_of(name).build(
        deep_stem=deep_stem, feature_channels=feature_channels, full_depth=full_depth, levels=levels
    )
