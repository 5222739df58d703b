"""Class memory: what a retrain learns about the classes it trained on, applied only to them.

A few-shot head trained on a handful of base classes fits them and transfers worse to new ones
(docs/benchmarks.md, "Quality": validation on unseen classes fell after step 0 on every fold,
as PFENet and BAM report for few base classes). Generalized few-shot segmentation (GFS-Seg,
DIaM) keeps what is learned per base class apart from what serves new classes. Here:

- each training class has a learned 2-class classifier (``weight``/``bias``) over the IFM
  trunk's features (MPR ∥ MPE ∥ prior → fuse → residual block), added to the logits. It starts
  at zero, so step 0 is the training-free start exactly;
- each training class has a *prototype*: the running mean, over its training episodes, of the
  support's routing descriptor (``routing_descriptor``: defect and background masked means of
  the pretrained levels, L2-normalised);
- an episode is *routed* to the training class whose prototype its support's descriptor is
  closest to (cosine), if that cosine reaches the class's threshold; otherwise nothing is added
  and the output is the class-agnostic model's. Thresholds are calibrated on validation data
  (``calibrate``): no validation-class (unseen) episode is routed, so new classes keep the start.

Training routes each episode to its true class (teacher forcing) and updates that class's
prototype; inference routes by the descriptor only, so a served model needs no class name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lerenet.model.priors import support_weights

NO_ROUTE = -1
SCALE = 10.0  # cosine-classifier temperature: unit features and weights of norm ~1 → ±10


def class_indices(classes: tuple[str, ...], names: list[str]) -> torch.Tensor:
    """Each name's index in ``classes``, ``NO_ROUTE`` for a name not there (training batches
    use it with the memory's class names alone: a loader worker gets no model)."""
    index = {name: i for i, name in enumerate(classes)}
    return torch.tensor([index.get(name, NO_ROUTE) for name in names])


def named_route(model: nn.Module, names: list[str]) -> torch.Tensor | None:
    """The route of episodes whose classes are ``names`` for ``model``: their indices in its
    class memory, or None for a model without one or one that routes by its supports."""
    memory = getattr(model, "memory", None)
    if memory is None or getattr(model, "memory_routing", "name") != "name":
        return None
    return memory.indices(names)


def routing_descriptor(
    support_levels: dict[str, torch.Tensor],
    support_masks: torch.Tensor,
    levels: tuple[str, ...],
) -> torch.Tensor:
    """The support's defect and background appearance as one unit vector per episode.

    For each level: the masked mean of the L2-normalised features over all K shots' defect
    pixels and over their background pixels (area weights), each L2-normalised; concatenated
    and scaled so that the cosine of two descriptors is the mean of the parts' cosines.
    Shapes: ``support_levels`` {level: B×K×C×h×w}, ``support_masks`` B×K×H×W → B×D.
    """
    parts = []
    for name in levels:
        feats = F.normalize(support_levels[name].float(), dim=2)
        fg, bg = support_weights(support_masks, tuple(feats.shape[-2:]), area=True)
        for weight in (fg, bg):
            pooled = (feats * weight).sum((1, 3, 4)) / weight.sum((1, 3, 4)).clamp_min(1e-6)
            parts.append(F.normalize(pooled, dim=1))
    return torch.cat(parts, dim=1) / len(parts) ** 0.5


class ClassMemory(nn.Module):
    """Per-class classifiers and routing prototypes of ``classes`` (see the module docstring).

    Shapes: ``forward(x B×C×h×w, route B)`` → B×2×h×w logits (zero where ``route`` is
    ``NO_ROUTE``); ``route(descriptor B×D)`` → B indices.
    """

    def __init__(self, channels: int, classes: tuple[str, ...], descriptor_dim: int) -> None:
        super().__init__()
        self.classes = tuple(classes)
        n = len(self.classes)
        self.weight = nn.Parameter(torch.zeros(n, 2, channels))
        self.bias = nn.Parameter(torch.zeros(n, 2))
        self.scale = SCALE
        self.register_buffer("proto_sum", torch.zeros(n, descriptor_dim))
        self.register_buffer("proto_count", torch.zeros(n))
        # +inf: nothing is routed until ``calibrate`` has seen validation data
        self.register_buffer("threshold", torch.full((n,), float("inf")))

    def indices(self, names: list[str]) -> torch.Tensor:
        """Each class name's memory index, ``NO_ROUTE`` for a class the memory lacks."""
        return class_indices(self.classes, names)

    def prototypes(self) -> torch.Tensor:
        """M×D unit prototypes (zero rows for classes no episode has updated yet)."""
        return F.normalize(self.proto_sum / self.proto_count.clamp_min(1)[:, None], dim=1)

    @torch.no_grad()
    def observe(self, descriptor: torch.Tensor, route: torch.Tensor) -> None:
        """Add training episodes' descriptors to their classes' prototypes."""
        known = route >= 0
        if known.any():
            self.proto_sum.index_add_(0, route[known], descriptor[known].to(self.proto_sum))
            self.proto_count.index_add_(0, route[known], torch.ones_like(route[known]).float())

    def similarity(self, descriptor: torch.Tensor) -> torch.Tensor:
        """B×M cosines of the descriptors to the class prototypes."""
        return descriptor.float() @ self.prototypes().T

    def route(self, descriptor: torch.Tensor) -> torch.Tensor:
        """The nearest class of each descriptor when its cosine reaches that class's
        threshold, else ``NO_ROUTE``."""
        if not self.classes:
            return torch.full((descriptor.shape[0],), NO_ROUTE, device=descriptor.device)
        cos = self.similarity(descriptor)
        best, index = cos.max(1)
        return torch.where(best >= self.threshold[index], index, torch.full_like(index, NO_ROUTE))

    @torch.no_grad()
    def calibrate(
        self,
        own: dict[int, torch.Tensor],
        unseen: torch.Tensor | None,
        quantile: float = 0.05,
    ) -> None:
        """Set each class's threshold from validation descriptors' cosines.

        ``own[c]``: cosines of class c's seen-class validation supports to prototype c;
        ``unseen``: U×M cosines of validation-class (unseen) supports to every prototype.
        Threshold c = the larger of the ``quantile`` of ``own[c]`` and just above the highest
        unseen cosine to c, so that no validation-class episode is routed to c. A class with
        neither keeps +inf (never routed).
        """
        for c in range(len(self.classes)):
            bounds = []
            if c in own and own[c].numel():
                bounds.append(float(torch.quantile(own[c].float(), quantile)))
            if unseen is not None and unseen.numel():
                bounds.append(float(unseen[:, c].max()) + 1e-4)
            self.threshold[c] = max(bounds) if bounds else float("inf")

    def forward(self, x: torch.Tensor, route: torch.Tensor) -> torch.Tensor:
        """Logits of each episode's class classifier over the L2-normalised trunk features
        (a cosine classifier, as generalized few-shot segmentation uses for base classes:
        the trunk's feature scale then cannot blow a class's logits up in a few steps)."""
        known = route >= 0
        index = route.clamp_min(0)
        unit = F.normalize(x.float(), dim=1).to(x.dtype)
        logits = torch.einsum("bkc,bchw->bkhw", self.weight[index], unit) * self.scale
        logits = logits + self.bias[index][..., None, None]
        return logits * known[:, None, None, None].to(logits.dtype)
