"""GPU-only checks (run by bench/gpu.sh on a lent GPU machine; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

from lerenet.config.schema import ModelConfig
from lerenet.evaluation.inference import optimize_for_inference, predict_logits
from lerenet.model.build import build_model
from lerenet.model.complexity import dummy_episode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_amp_inference_matches_fp32() -> None:
    model, _ = build_model(ModelConfig(backbone="vgg16_bn", weights="random"))
    episode = dummy_episode(2, 5, 200)
    with torch.no_grad():
        ref = torch.softmax(model.eval()(*episode), 1)
    fast = optimize_for_inference(model, "cuda")
    out = torch.softmax(predict_logits(fast, *episode, amp=True), 1).cpu()
    assert (out - ref).abs().max() < 0.05
