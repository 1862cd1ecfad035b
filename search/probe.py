"""Paired probes of one choice of a frozen supernet: every alternative on the same images and the same base path.

The gradient of the expected loss F(α, β) = E_{path ~ (α, β)}[L(path)] (HardCoRe-NAS eqs. (4), (5) sample these paths)
with respect to one group of the relaxation is a vector of conditional expectations:

    ∂F/∂α_{s,b,c} = P(slot (s, b) exists) · E[L | config c at (s, b), slot exists],     ∂F/∂β_{s,j} = E[L | depth j at s]

A probe estimates one such vector with common random numbers: one base path drawn from (α, β), one mini-batch of
images, and every alternative of the group — the 12 configs of a slot, or the depths of a stage — run on both, so
the differences between alternatives carry none of the variance of the images or of the other 19 slots' draws (a
score-function estimate over independent paths carries all of it, and on a trained supernet that variance buried the
per-config effects: docs/BENCHMARKS.md). The stages before the probed one run once; the alternatives then run as one
batch of G·m samples through the rest of the network, BatchNorm taking its batch statistics per alternative (over
its m images, as ``SupernetOracle.true_loss`` does over the pool) — what G separate single-path passes compute, in
one pass per block.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .supernet import ElasticIR, Supernet, _dw_conv


def group_bn(x: torch.Tensor, bn: nn.BatchNorm2d, ch: int, groups: int) -> torch.Tensor:
    """Training-mode BatchNorm over the first ``ch`` channels with statistics per group of N / ``groups`` samples
    (running statistics untouched); in eval mode the running statistics, as ``supernet._bn``."""
    if not bn.training:
        return F.batch_norm(x, bn.running_mean[:ch], bn.running_var[:ch], bn.weight[:ch], bn.bias[:ch], False, 0.0,
                            bn.eps)
    xg = x.unflatten(0, (groups, -1))  # (G, m, C, H, W): a view, whatever the memory format
    mean = xg.mean((1, 3, 4), keepdim=True)
    d = xg - mean  # two passes: Tensor.var over these strided dims ran 4-6x slower (a third of a polish's time)
    var = (d * d).mean((1, 3, 4), keepdim=True)
    scale = torch.rsqrt(var + bn.eps) * bn.weight[:ch].view(1, 1, -1, 1, 1)
    return torch.addcmul(bn.bias[:ch].view(1, 1, -1, 1, 1) - mean * scale, xg, scale).flatten(0, 1)


def block_grouped(block: ElasticIR, x: torch.Tensor, c: int, groups: int) -> torch.Tensor:
    """``ElasticIR.forward_config(x, c)`` with BatchNorm statistics per group of samples."""
    w, m = block.weights(c), block.mids[c]
    h = block.act(group_bn(F.conv2d(x, w["pw"]), block.pw_bn, m, groups))
    h = block.act(group_bn(_dw_conv(h, w["dw"], block.s), block.dw_bn, m, groups))
    if block.ses[c]:
        g = F.relu(F.conv2d(h.mean((2, 3), keepdim=True), w["se_reduce"], w["se_reduce_b"]))
        h = h * F.hardsigmoid(F.conv2d(g, w["se_expand"], w["se_expand_b"]))
    y = group_bn(F.conv2d(h, w["pwl"]), block.pwl_bn, block.o, groups)
    return x + y if block.residual else y


def head_grouped(net: Supernet, x: torch.Tensor, groups: int) -> torch.Tensor:
    """The head's logits with its BatchNorm's statistics per group."""
    head = net.head
    conv, bn = head.conv[0], head.conv[1]
    x = head.conv[2](group_bn(conv(x), bn, bn.num_features, groups)) if len(head.conv) > 2 else \
        group_bn(conv(x), bn, bn.num_features, groups)
    return head.classifier(head.act(head.conv_head(head.pool(x))).flatten(1))


def run_stages(net: Supernet, h: torch.Tensor, stages: Sequence[Sequence[int]], first: int,
               groups: int = 1) -> torch.Tensor:
    """Stages ``first``.. of the architecture ``stages`` (configs per stage) on ``h``; statistics per group."""
    for s in range(first, len(stages)):
        for c, block in zip(stages[s], net.stages[s]):
            h = block.forward_config(h, c) if groups == 1 else block_grouped(block, h, c, groups)
    return h


def probe_slot(net: Supernet, h: torch.Tensor, y: torch.Tensor, stages: List[List[int]], s: int,
               b: int) -> torch.Tensor:
    """Mean loss on (h, y) of the base path ``stages`` with slot (s, b) set to each config in turn: (C,).

    ``h``: the stem's output of the images; the base path must have slot (s, b) (depth of stage s > b)."""
    x = run_stages(net, h, stages[:s], 0)
    for c, block in zip(stages[s][:b], net.stages[s]):
        x = block.forward_config(x, c)
    n = len(net.stages[s][b].mids)
    x = torch.cat([net.stages[s][b].forward_config(x, c) for c in range(n)])  # (C·m, ...): the alternatives
    for c, block in zip(stages[s][b + 1:], list(net.stages[s])[b + 1:]):
        x = block_grouped(block, x, c, n)
    x = head_grouped(net, run_stages(net, x, stages, s + 1, n), n)
    return F.cross_entropy(x, y.repeat(n), reduction="none").view(n, -1).mean(1)


def probe_depth(net: Supernet, h: torch.Tensor, y: torch.Tensor, stages: List[List[int]], s: int,
                depths: Sequence[int]) -> torch.Tensor:
    """Mean loss of the base path with stage s cut to each depth of ``depths`` in turn: (D,). The base path's stage s
    must hold max(depths) configs (the slots a deeper depth adds)."""
    x = run_stages(net, h, stages[:s], 0)
    outs = []
    for b, (c, block) in enumerate(zip(stages[s], net.stages[s])):
        x = block.forward_config(x, c)
        if b + 1 in depths:
            outs.append(x)
    n = len(outs)
    x = head_grouped(net, run_stages(net, torch.cat(outs), stages, s + 1, n), n)
    return F.cross_entropy(x, y.repeat(n), reduction="none").view(n, -1).mean(1)


class PairedTable:
    """The paired estimator's memory: per group, the running mean of its probes' conditional losses.

    A call probes ``probes`` groups, in turn over a fresh random order of all groups each round (the first call probes
    every group, so that no row of the gradient starts at 0), each on the oracle's next mini-batch; a group's row is
    the mean of its last ``memory`` probes (weight max(1/n, 1/memory) for the newest), so it follows the iterate as
    the search moves the sampling distribution. The gradient comes from the whole table (search/oracle.py)."""

    def __init__(self, net: Supernet, probes: int = 1, memory: int = 4):
        if probes < 1 or memory < 1:
            raise ValueError(f"need probes >= 1 and memory >= 1; got probes={probes}, memory={memory}")
        sp = net.space
        self.net, self.probes, self.memory = net, probes, memory
        self.t_alpha = torch.zeros(sp.n_stages, sp.max_depth, len(sp.configs))
        self.n_alpha = torch.zeros(sp.n_stages, sp.max_depth)
        self.t_beta = torch.zeros(sp.n_stages, len(sp.depths))
        self.n_beta = torch.zeros(sp.n_stages)
        self.groups = [("a", s, b) for s in range(sp.n_stages) for b in range(sp.max_depth)] + \
            [("b", s, 0) for s in range(sp.n_stages)]
        self.queue: List[tuple] = []

    def _update(self, table: torch.Tensor, count: torch.Tensor, at: tuple, losses: torch.Tensor) -> None:
        count[at] += 1
        w = max(1.0 / float(count[at]), 1.0 / self.memory)
        table[at] = (1 - w) * table[at] + w * (losses - losses.mean())

    def refresh(self, oracle, qa: torch.Tensor, qb: torch.Tensor, generator: torch.Generator,
                every: bool = False) -> float:
        """Probe the next groups (``every``: all of them) at the sampling distribution (qa, qb); returns their mean
        loss under it."""
        sp, net = self.net.space, self.net
        todo = len(self.groups) if every or not self.n_alpha.any() else self.probes
        depths = torch.tensor(sp.depths)
        losses = []
        for _ in range(todo):
            if not self.queue:
                self.queue = [self.groups[i] for i in torch.randperm(len(self.groups), generator=generator)]
            kind, s, b = self.queue.pop()
            cfg = torch.multinomial(qa.reshape(-1, qa.shape[-1]), 1, generator=generator).view(qa.shape[:-1])
            dep = torch.multinomial(qb, 1, generator=generator).view(-1)
            if kind == "b":
                dep[s] = int(torch.argmax(depths))  # every slot a deeper depth adds is drawn
            elif sp.depths[int(dep[s])] <= b:  # the slot must exist: its stage's depth from qb given depth > b
                deeper = qb[s] * (depths > b)
                if not deeper.sum() > 0:  # it never does (ε = 0): its row has no weight in the gradient
                    continue
                dep[s] = int(torch.multinomial(deeper, 1, generator=generator))
            stages = [cfg[i, :sp.depths[int(dep[i])]].tolist() for i in range(sp.n_stages)]
            idx = oracle.next_batch()
            h, y = oracle.stemmed()[idx], oracle.y[idx]
            if kind == "a":
                out = probe_slot(net, h, y, stages, s, b)
                self._update(self.t_alpha, self.n_alpha, (s, b), out)
                losses.append(float(qa[s, b] @ out))
            else:
                out = probe_depth(net, h, y, stages, s, sp.depths)
                self._update(self.t_beta, self.n_beta, (s,), out)
                losses.append(float(qb[s] @ out))
            oracle.stats["samples"] += len(out) * len(idx)
        return sum(losses) / max(len(losses), 1)
