"""``bench/defect_free_probe.py``: what it counts as a false alarm on a defect-free tile, and
that a tile reaches the model as a defects9 image does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def probe(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the bench scripts import each other by name
    import defect_free_probe

    return defect_free_probe


def test_the_fallback_fills_only_empty_masks_and_its_gate_keeps_low_margins_empty(probe) -> None:
    margin = torch.full((3, 8, 8), -0.1)
    margin[1, :2, :2] = 1.0  # episode 1 has a region of its own
    margin[0, 3, 3] = margin[2, 3, 3] = -0.05  # episodes 0 and 2: empty, best cell -0.05
    supports = torch.zeros(3, 1, 8, 8)
    supports[:, :, :4, :4] = 1  # a quarter of each support is defect
    out = probe.variants(margin, supports)
    area = {name: pred.flatten(1).sum(1).tolist() for name, pred in out.items()}
    assert area["argmax"] == [0, 4, 0]
    assert area["fallback"][1] == 4 and area["fallback"][0] > 0 and area["fallback"][2] > 0
    assert out["fallback"][0, 3, 3] == 1  # the fallback takes the highest margins first
    gated = area["fallback, gate -0.5"]
    assert gated[0] > 0 and gated[1] == 4  # the best margin -0.05 passes a gate at -0.5
    margin[2] = -1.0  # episode 2's best now -1.0: below the gate, it stays empty
    assert probe.variants(margin, supports)["fallback, gate -0.5"][2].sum() == 0


def test_a_tile_is_resized_as_defects9_was_then_as_the_evaluation_does(probe, tmp_path) -> None:
    big = tmp_path / "big.jpg"
    Image.fromarray(np.full((400, 640, 3), 128, np.uint8)).save(big)
    tensor = probe.load_free(big, 64, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert tensor.shape == (3, 64, 64)
    assert torch.allclose(tensor, torch.full_like(tensor, (128 / 255 - 0.5) / 0.25), atol=0.05)
