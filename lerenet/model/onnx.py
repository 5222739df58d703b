"""ONNX export of a trained model, checked against onnxruntime.

Shapes are fixed at export (batch B, shots K and the model's input size): the TorchScript-based
exporter folds the episode reshapes into constants, so a graph exported for K = 1 serves
1-shot episodes; export once per K you deploy (``--shots``). Parity is measured on random and,
when given, real episodes of those shapes: the maximum absolute difference of the defect
probability between PyTorch and onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

INPUTS = ["query_img", "support_imgs", "support_masks"]


class _Probabilities(nn.Module):
    """The exported graph: episode in, defect probability out (as the pyfunc returns)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, query_img, support_imgs, support_masks):
        return torch.softmax(self.model(query_img, support_imgs, support_masks), dim=1)[:, 1]


def export_onnx(model: nn.Module, path: Path, size: int, shots: int = 1, batch: int = 1) -> Path:
    from lerenet.model.complexity import dummy_episode

    wrapped = _Probabilities(model.eval().cpu()).eval()
    episode = dummy_episode(batch, shots, size)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapped,
        episode,
        str(path),
        input_names=INPUTS,
        output_names=["defect_probability"],
        opset_version=17,
        dynamo=False,
    )
    return path


def parity(model: nn.Module, onnx_path: Path, episodes: list[tuple[torch.Tensor, ...]]) -> float:
    """Max |p_torch − p_onnx| over the given episodes."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    wrapped = _Probabilities(model.eval().cpu()).eval()
    worst = 0.0
    for episode in episodes:
        with torch.inference_mode():
            expected = wrapped(*episode).numpy()
        got = session.run(None, {name: t.numpy() for name, t in zip(INPUTS, episode, strict=True)})[
            0
        ]
        worst = max(worst, float(np.abs(expected - got).max()))
    return worst
