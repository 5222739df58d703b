"""The empty-mask fallback (``model.empty_fallback``): what changes, what never does."""

from __future__ import annotations

import pytest
import torch

from lerenet.config.schema import ModelConfig
from lerenet.model.build import build_model
from lerenet.model.fallback import lift_empty, support_defect_share


def _logits(margins: torch.Tensor) -> torch.Tensor:
    """B×2×H×W logits whose defect margin is ``margins`` (B×H×W)."""
    return torch.stack([torch.zeros_like(margins), margins], dim=1)


def test_only_an_empty_episode_changes_and_gets_its_k_best_pixels() -> None:
    torch.manual_seed(0)
    margins = -1 - torch.rand(2, 8, 8)  # both empty
    margins[1, 3, 3] = 0.5  # episode 1 already predicts a pixel
    supports = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    supports[:, 0, :2, :4] = 1  # 8 of 64 pixels: share 1/8
    out = lift_empty(_logits(margins), supports, share=0.5)
    mask = out.argmax(1)
    assert torch.equal(out[1], _logits(margins)[1])  # not empty: untouched
    assert int(mask[0].sum()) == 4  # 0.5 × 1/8 × 64
    best = margins[0].flatten().topk(4).indices
    assert set(torch.nonzero(mask[0].flatten()).flatten().tolist()) == set(best.tolist())
    # the lift is the smallest that wins: the region is where the margin was highest, not a
    # new confident detection
    assert float((out[0, 1] - out[0, 0]).max()) < 0.01


def test_the_gate_keeps_a_query_far_from_the_supports_empty() -> None:
    margins = torch.full((2, 4, 4), -5.0)
    margins[0, 0, 0] = -0.5  # near the threshold
    supports = torch.ones(2, 1, 4, 4, dtype=torch.long)
    mask = lift_empty(_logits(margins), supports, share=0.25, gate=-1.0).argmax(1)
    assert int(mask[0].sum()) == 4 and int(mask[1].sum()) == 0


def test_the_supports_share_ignores_unlabelled_pixels_and_at_least_one_pixel_is_lifted() -> None:
    masks = torch.zeros(1, 2, 4, 4, dtype=torch.long)
    masks[0, 0, 0, :2] = 1  # 2 of 16
    masks[0, 1, :2] = 255  # 8 ignored, 0 of the other 8
    assert torch.allclose(support_defect_share(masks), torch.tensor([(2 / 16 + 0) / 2]))
    out = lift_empty(_logits(torch.full((1, 4, 4), -1.0)), masks * 0, share=1.0)
    assert int(out.argmax(1).sum()) == 1


def test_the_model_lifts_in_eval_mode_only_and_not_by_default() -> None:
    """The served forward (eval) has no empty mask with the fallback on; training's logits and
    a model without it are the same network's output as before."""
    cfg = ModelConfig(backbone="vgg16_bn", weights="random", residual="lda", prior="matching")
    torch.manual_seed(0)
    model, _ = build_model(cfg, load_weights=False)
    lifted, _ = build_model(cfg.model_copy(update={"empty_fallback": 1.0}), load_weights=False)
    lifted.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)  # inputs whose episode 1 alone predicts nothing
    query, supports = (
        torch.rand(3, 3, 32, 32, generator=g),
        torch.rand(3, 1, 3, 32, 32, generator=g),
    )
    masks = torch.zeros(3, 1, 32, 32, dtype=torch.long)
    masks[:, :, 8:16, 8:16] = 1
    for net in (model, lifted):
        net.eval()
    with torch.no_grad():
        plain, served = model(query, supports, masks), lifted(query, supports, masks)
    empty = plain.argmax(1).flatten(1).sum(1) == 0
    assert bool(empty.any()) and not bool(empty.all())  # the case under test is there
    assert torch.equal(plain[~empty], served[~empty])
    assert bool((served.argmax(1).flatten(1).sum(1) > 0).all())
    lifted.train()
    model.train()
    torch.manual_seed(1)
    a = model(query, supports, masks)
    torch.manual_seed(1)
    assert torch.equal(a, lifted(query, supports, masks))


def test_an_episode_a_class_memory_serves_keeps_its_empty_mask() -> None:
    """The fallback serves the start: an episode routed to a trained class keeps its mask
    (empty included), an unrouted one in the same batch is lifted."""
    from lerenet.model.lerenet import encode_episode
    from tests.unit.test_model import memory_model

    model = memory_model(empty_fallback=0.5)
    query, supports = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 3, 64, 64)
    masks = torch.zeros(2, 1, 64, 64, dtype=torch.long)
    masks[:, :, 16:32, 16:32] = 1  # a defect share of 1/16
    with torch.no_grad():
        model.ifm.classifier[-1].bias.copy_(torch.tensor([50.0, -50.0]))  # nothing is defect
        q, s = encode_episode(model.backbone, query, supports, False)
        out = model.forward_levels(q, s, masks, (64, 64), route=torch.tensor([0, -1]))
    area = out.argmax(1).flatten(1).sum(1).tolist()
    assert area[0] == 0  # routed to "Crack": its own (empty) decision
    assert area[1] == 0.5 * 4096 / 16  # the start's episode: lifted


def test_the_fallback_survives_an_onnx_export_traced_on_a_full_mask(tmp_path) -> None:
    """Traced (ONNX) on logits whose mask is not empty, the graph still lifts an episode that
    is empty at run time: the fallback is tensor operations, not a Python branch."""
    ort = pytest.importorskip("onnxruntime")

    class Lift(torch.nn.Module):
        def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            return lift_empty(logits, masks, share=0.5)

    masks = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    masks[:, 0, :2, :4] = 1
    full = _logits(torch.rand(2, 8, 8) + 0.1)  # nothing empty at trace time
    path = tmp_path / "lift.onnx"
    torch.onnx.export(
        Lift(),
        (full, masks),
        str(path),
        input_names=["logits", "masks"],
        opset_version=17,
        dynamo=False,
    )
    torch.manual_seed(0)
    empty = _logits(-1 - torch.rand(2, 8, 8))
    empty[1, 1, 2, 2] = 1.0  # episode 1 is not empty
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"logits": empty.numpy(), "masks": masks.numpy()})[0]
    expected = lift_empty(empty, masks, share=0.5)
    assert torch.equal(torch.from_numpy(got).argmax(1), expected.argmax(1))
    assert int(expected.argmax(1)[0].sum()) == 4
