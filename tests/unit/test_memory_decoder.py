"""The class memory's shared conv decoder (``model.memory_hidden``): step 0 is still the
start, what it learns reaches routed episodes only, and it trains with the head."""

from __future__ import annotations

import torch

from lerenet.model.lerenet import encode_episode
from lerenet.training.optim import param_groups
from tests.unit.test_model import SIZE, dummy_episode, memory_model


def _episode(model):
    query, supports, masks = dummy_episode(2, 1, SIZE)
    q, s = encode_episode(model.backbone, query, supports, False)
    return q, s, masks


def test_a_decoder_memory_starts_at_the_start_and_its_decoder_reaches_routed_episodes() -> None:
    linear, decoded = memory_model(), memory_model(hidden=8)
    assert decoded.memory.decoder is not None and linear.memory.decoder is None
    q, s, masks = _episode(linear)
    routed = torch.tensor([0, -1])
    size = (SIZE, SIZE)
    with torch.no_grad():
        start = linear.forward_levels(q, s, masks, size, route=routed)
        assert torch.equal(decoded.forward_levels(q, s, masks, size, route=routed), start)
        width = decoded.memory.weight.shape[-1] - 8
        decoded.memory.weight[..., width:].normal_()  # only the decoder's channels are read
        after = decoded.forward_levels(q, s, masks, size, route=routed)
        assert not torch.allclose(after[0], start[0])
        assert torch.equal(after[1], start[1])  # routed nowhere: the start, bit for bit
        decoded.memory.decoder[0].weight.normal_()
        changed = decoded.forward_levels(q, s, masks, size, route=routed)
    assert not torch.allclose(changed[0], after[0])  # the decoder's weights shape the output
    assert torch.equal(changed[1], start[1])


def test_the_decoder_gets_a_gradient_once_its_class_weights_move_and_trains_with_the_head() -> None:
    model = memory_model(hidden=8).train()
    q, s, masks = _episode(model)
    with torch.no_grad():
        model.memory.weight.normal_()
    out = model.forward_levels(q, s, masks, (SIZE, SIZE), route=torch.tensor([1, 1]))
    out.logsumexp(1).mean().backward()
    grad = model.memory.decoder[0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
    groups = {g["name"]: g for g in param_groups(model, 1e-3, 10.0, 0.0, 1.0)}
    decoder = {id(p) for p in model.memory.decoder.parameters()}
    assert decoder <= {id(p) for p in groups["head"]["params"]}
    assert groups["head"]["lr"] == 1e-2
