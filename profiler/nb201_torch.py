"""Torch modules of the NAS-Bench-201 network and of each piece a NB201 LUT measures.

Follows NAS-Bench-201's published code (``xautodl``'s ``TinyNetwork`` / ``InferCell`` / ``ResNetBasicblock``):
ReLU-Conv-BN convolutions, 3x3 average pooling without padded zeros in the mean, a residual reduction block (ReLU-Conv
3x3 s2-BN, ReLU-Conv 3x3-BN, shortcut avg-pool 2x2 then 1x1 conv) between stages, a 3x3 stem conv with BN and a
BN-ReLU-global pool-linear head. Node i is the sum of its incoming edges. A 'none' edge is the zero tensor, so it is
left out of the sum (what it adds is zero); a node whose incoming edges are all 'none' is zero. Edges that feed
nothing the output depends on are still computed, as a runtime given the graph would.
"""
from __future__ import annotations

from typing import List

import torch
from torch import nn

from .nb201 import EDGES, N_NODES, NONE, OPS, CellArch, Piece
from .nets import randomize_bn, seed_from


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1):
        super().__init__(nn.ReLU(), nn.Conv2d(c_in, c_out, k, stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(c_out))


def make_op(name: str, c: int) -> nn.Module:
    """One cell op at ``c`` channels, stride 1 ('none' has no module: the edge is left out of the node sum)."""
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"no module for NB201 op {name!r}; expected one of {', '.join(OPS[1:])}")


class Cell(nn.Module):
    """NB201's InferCell: node i = Σ_{j<i} op_{j->i}(node j); the cell's output is node 3."""

    def __init__(self, arch: CellArch, c: int):
        super().__init__()
        self.ops = nn.ModuleList()
        self.wiring: List[List[int]] = [[] for _ in range(N_NODES)]  # node -> indices into self.ops
        self.sources: List[int] = []
        for e, (j, i) in enumerate(EDGES):
            if arch.ops[e] == NONE:
                continue
            self.wiring[i].append(len(self.ops))
            self.sources.append(j)
            self.ops.append(make_op(OPS[arch.ops[e]], c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, N_NODES):
            acc = None
            for k in self.wiring[i]:
                y = self.ops[k](nodes[self.sources[k]])
                acc = y if acc is None else acc + y
            nodes.append(acc if acc is not None else zero(x))
        return nodes[-1]


class ReductionBlock(nn.Module):
    """NB201's ResNetBasicblock with stride 2: c -> 2c channels, resolution halved."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(c_in, c_out, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class Head(nn.Module):
    def __init__(self, c: int, classes: int):
        super().__init__()
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.lastact(x)).flatten(1))


def stem(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))


def zero(x: torch.Tensor) -> torch.Tensor:
    """A node with no non-'none' input: NB201's Zero op, a runtime multiply by 0 (not a constant)."""
    return x * 0.0


class ZeroNode(nn.Module):
    """A zero node as a piece: ``zero(x) + x``. The input has another consumer, as a cell's input does, so the
    runtime cannot fold the multiply into the conv before it; the add is the add piece's."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return zero(x) + x


class Residual(nn.Module):
    """A ReLU that runs on its own, as a piece: ``x + conv1x1(relu(x))``. The input is also read raw (the sum), so
    the ReLU cannot be fused into the conv before it; the sum is folded into the conv (conv-with-sum)."""

    def __init__(self, c: int):
        super().__init__()
        self.op = make_op("nor_conv_1x1", c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.op(x)


class AddConst(nn.Module):
    """A node sum as a piece of its own: the input plus a stored tensor of the same shape (one elementwise add)."""

    def __init__(self, c: int, r: int):
        super().__init__()
        self.register_buffer("other", torch.randn(1, c, r, r))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.other


class Network(nn.Sequential):
    """The whole NB201 network of an architecture (TinyNetwork): stem, 3 stages of cells, reductions, head."""

    def __init__(self, arch: CellArch):
        sp = arch.space
        layers = [stem(sp.channels[0])]
        for s, c in enumerate(sp.channels):
            if s:
                layers.append(ReductionBlock(sp.channels[s - 1], c))
            layers += [Cell(arch, c) for _ in range(sp.cells_per_stage)]
        layers.append(Head(sp.channels[-1], sp.classes))
        super().__init__(*layers)


def build_network(arch: CellArch) -> nn.Module:
    """The network of ``arch``, weights seeded from its string (exports are reproducible)."""
    seed_from(str(arch))
    net = Network(arch)
    randomize_bn(net)
    return net.eval()


def build_piece(p: Piece) -> nn.Module:
    """The module of one profiling piece (see ``profiler.nb201.Piece``), weights seeded from its key."""
    seed_from(str(p))
    sp = p.space
    if p.kind == "stem":
        m = stem(sp.channels[0])
    elif p.kind == "head":
        m = Head(p.c, sp.classes)
    elif p.kind == "reduce":
        m = ReductionBlock(p.c, 2 * p.c)
    elif p.kind == "add":
        m = nn.Sequential(*[AddConst(p.c, p.r) for _ in range(p.reps)])
    elif p.kind == "relu":  # its cost is the chain's minus the 1x1 conv chain's; after a conv: the blocked layout
        m = nn.Sequential(nn.Conv2d(p.c, p.c, 1), *[Residual(p.c) for _ in range(p.reps)])
    elif p.kind == "zero":  # after a 1x1 conv, as in a cell: its cost is the chain's minus the conv and add chains'
        m = nn.Sequential(*[nn.Sequential(make_op("nor_conv_1x1", p.c), ZeroNode()) for _ in range(p.reps)])
    else:
        m = nn.Sequential(*[make_op(p.kind, p.c) for _ in range(p.reps)]) if p.reps > 1 else make_op(p.kind, p.c)
    randomize_bn(m)
    return m.eval()


def build_module(what) -> nn.Module:
    """The torch module of a NB201 network (``CellArch``) or LUT piece (``Piece``), as the export path builds it."""
    return build_network(what) if isinstance(what, CellArch) else build_piece(what)
