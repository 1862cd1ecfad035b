"""Torch modules for every block kind of the space, and whole networks built from an architecture.

The modules follow timm's MobileNetV3 (as HardCoRe-NAS uses it): Conv-BN-Act, depthwise-separable, inverted residual
with optional squeeze-excite (ReLU + hard-sigmoid gate, reduced channels divisible by 8) and an efficient head.
"""
from __future__ import annotations

import hashlib
from typing import Iterable

import torch
from torch import nn

from .space import Arch, BlockSpec


def act_layer(act: str) -> nn.Module:
    return nn.Hardswish() if act == "hs" else nn.ReLU()


class ConvBnAct(nn.Sequential):
    def __init__(self, i: int, o: int, k: int, s: int = 1, groups: int = 1, act: str | None = "re"):
        layers = [nn.Conv2d(i, o, k, s, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(o)]
        if act is not None:
            layers.append(act_layer(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, ch: int, rd: int):
        super().__init__()
        self.reduce = nn.Conv2d(ch, rd, 1)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(rd, ch, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


class InvertedResidual(nn.Module):
    def __init__(self, b: BlockSpec):
        super().__init__()
        self.residual = b.residual
        self.pw = ConvBnAct(b.i, b.mid, 1, act=b.act)
        self.dw = ConvBnAct(b.mid, b.mid, b.k, b.s, groups=b.mid, act=b.act)
        self.se = SqueezeExcite(b.mid, b.se_ch) if b.se else nn.Identity()
        self.pwl = ConvBnAct(b.mid, b.o, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.se(self.dw(self.pw(x))))
        return x + y if self.residual else y


class DepthwiseSeparable(nn.Module):
    def __init__(self, b: BlockSpec):
        super().__init__()
        self.residual = b.residual
        self.dw = ConvBnAct(b.i, b.i, b.k, b.s, groups=b.i, act=b.act)
        self.pw = ConvBnAct(b.i, b.o, 1, act=None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class Head(nn.Module):
    def __init__(self, b: BlockSpec):
        super().__init__()
        self.conv = ConvBnAct(b.i, b.o, 1, act=b.act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv_head = nn.Conv2d(b.o, b.f, 1)
        self.act = act_layer(b.act)
        self.classifier = nn.Linear(b.f, b.c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv_head(self.pool(self.conv(x))))
        return self.classifier(x.flatten(1))


def build_block(b: BlockSpec) -> nn.Module:
    """A module for one block spec, with weights seeded from the block string (exports are reproducible)."""
    seed_from(str(b))
    if b.kind == "ir":
        m = InvertedResidual(b)
    elif b.kind == "ds":
        m = DepthwiseSeparable(b)
    elif b.kind == "conv":
        m = ConvBnAct(b.i, b.o, b.k, b.s, act=b.act)
    elif b.kind == "head":
        m = Head(b)
    else:  # BlockSpec validates kinds; this guards a new kind added there but not here
        raise ValueError(f"no module for block kind {b.kind!r}")
    randomize_bn(m)
    return m.eval()


def seed_from(key: str) -> None:
    """Seed torch from a key string, so a module built for the same key gets the same weights."""
    torch.manual_seed(int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))


def randomize_bn(m: nn.Module) -> None:
    # Untrained BN (mean 0, var 1, weight 1) is fine for timing, but keep values O(1) so no layer feeds denormals.
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)


def build_chain(blocks: Iterable[BlockSpec]) -> nn.Module:
    return nn.Sequential(*[build_block(b) for b in blocks]).eval()


def build_network(arch: Arch) -> nn.Module:
    """The whole network of an architecture: stem, ds block, the chosen blocks of each stage, head."""
    return build_chain(arch.blocks())
