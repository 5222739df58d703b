"""MPR: multi-prototype reasoning over local descriptors (GloRe-style crosswise graph).

Support and query local descriptors are pooled into graph nodes with 1×1 projections, the two
node sets are joined, one graph convolution with a learned adjacency reasons over them, and the
result is projected back onto the query pixels with a residual (LERENET.md, "MPR").

Reading of the specification: the pooling is *crosswise* — support states are pooled by the
query's projection (G₁) and query states by the support's projection (G₂) — so each node
carries evidence from both images. GloRe's optional 1/HW normalisation of the pooled states is a
parameter (`normalize`), off by default as in the authors' code; turn it on for fp16 training,
where un-normalised sums over 2,500 pixels can overflow.
"""

from __future__ import annotations

import torch
from torch import nn


class GraphConv(nn.Module):
    """One GloRe graph convolution: node mixing with residual, ReLU, state update.

    Shapes: ``x`` B×d×N → B×d×N (d states, N nodes).
    """

    def __init__(self, num_state: int, num_node: int) -> None:
        super().__init__()
        self.node_mix = nn.Conv1d(num_node, num_node, kernel_size=1)  # learned adjacency
        self.relu = nn.ReLU(inplace=True)
        self.state_update = nn.Conv1d(num_state, num_state, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.node_mix(x.transpose(1, 2)).transpose(1, 2)
        h = h + x
        return self.state_update(self.relu(h))


class MPR(nn.Module):
    """Crosswise graph reasoning between masked support features and query features.

    Args:
        channels: C, the feature channels of both inputs.
        num_state: d, the graph state size (default C).
        num_node: v, the node count per image (default C).
        normalize: divide pooled node states by the pixel count (GloRe option).

    Shapes: ``support`` B×C×H×W (already masked, shots averaged), ``query`` B×C×H×W →
    B×C×H×W.
    """

    def __init__(
        self,
        channels: int,
        num_state: int | None = None,
        num_node: int | None = None,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.num_state = num_state or channels
        self.num_node = num_node or channels
        self.normalize = normalize
        self.theta = nn.Conv2d(channels, self.num_state, kernel_size=1)  # state projection
        self.phi = nn.Conv2d(channels, self.num_node, kernel_size=1)  # node projection
        self.gcn = GraphConv(self.num_state, 2 * self.num_node)
        self.node_reduce = nn.Conv1d(2 * self.num_node, self.num_node, kernel_size=1)
        self.out_conv = nn.Conv2d(self.num_state, channels, kernel_size=1, bias=False)
        self.out_bn = nn.BatchNorm2d(channels, eps=1e-4)

    def forward(self, support: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        b, _, h, w = query.shape
        state_s = self.theta(support).flatten(2)  # B×d×HW
        state_q = self.theta(query).flatten(2)
        proj_s = self.phi(support).flatten(2)  # B×v×HW
        proj_q = self.phi(query).flatten(2)
        g_support = torch.bmm(state_s, proj_q.transpose(1, 2))  # B×d×v
        g_query = torch.bmm(state_q, proj_s.transpose(1, 2))  # B×d×v
        nodes = torch.cat([g_support, g_query], dim=2)  # B×d×2v
        if self.normalize:
            nodes = nodes / (h * w)
        nodes = self.gcn(nodes)
        nodes = self.node_reduce(nodes.transpose(1, 2)).transpose(1, 2)  # B×d×v
        pixels = torch.bmm(nodes, proj_q).view(b, self.num_state, h, w)  # B×d×H×W
        return query + self.out_bn(self.out_conv(pixels))
