"""Parameter and FLOP accounting per top-level module, for ``lerenet model summary`` and
``bench/model_speed.py``.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` (counts matmuls and convolutions,
2 FLOPs per multiply-add); element-wise ops are not counted, which is the convention papers use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class ModuleCost:
    name: str
    params: int
    trainable: int
    flops: int


def dummy_episode(
    batch: int, shots: int, size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A random episode in the model's contract (query, supports, support masks)."""
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, 3, size, size, generator=gen)
    supports = torch.randn(batch, shots, 3, size, size, generator=gen)
    masks = (torch.rand(batch, shots, size, size, generator=gen) > 0.7).long()
    return query, supports, masks


def count_flops(model: nn.Module, episode: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """FLOPs of one forward pass, keyed by module path ('' = whole model)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*episode)
    root = type(model).__name__
    out: dict[str, int] = {}
    for name, ops in counter.get_flop_counts().items():
        key = "" if name in ("Global", root) else name.removeprefix(root + ".")
        out[key] = int(sum(ops.values()))
    return out


def model_summary(
    model: nn.Module, *, batch: int = 1, shots: int = 1, size: int = 200
) -> list[ModuleCost]:
    """Parameters and forward FLOPs for each direct child module, then the total."""
    was_training = model.training
    model.eval()
    flops = count_flops(model, dummy_episode(batch, shots, size))
    model.train(was_training)
    rows = []
    for name, child in model.named_children():
        params = sum(p.numel() for p in child.parameters())
        trainable = sum(p.numel() for p in child.parameters() if p.requires_grad)
        rows.append(ModuleCost(name, params, trainable, flops.get(name, 0)))
    total_params = sum(p.numel() for p in model.parameters())
    total_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rows.append(ModuleCost("total", total_params, total_train, flops.get("", 0)))
    return rows
