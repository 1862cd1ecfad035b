"""The searchers' stochastic oracle on a frozen supernet: rotating mini-batches, sampled paths, cached work.

``SupernetOracle(net, data)`` is an ``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` (the interface every
searcher takes) whose calls are cheap enough for Block-Coordinate *Stochastic* Frank-Wolfe. The target is
F(α, β) = E_{path ~ (α, β)}[loss], the expected loss of the architectures eqs. (4), (5) sample — what HardCoRe-NAS's
search optimises with sampled paths — rather than the loss of the expected-output mixture; paths are drawn from
(1 − ε)(α, β) + ε·uniform (ε = ``explore``) so that configs the iterate has left keep being measured, and the
gradient is that of F at the smoothed point times (1 − ε) (the chain rule).

* **Rotating mini-batches.** Each probe or call takes the next ``images`` validation images of a seeded permutation
  of the pool (the validation split, or a fixed subset of ``pool`` images of a larger one).
* **Cached work.** The stem and the fixed ds block do not depend on α, β: they run once per pool image (BatchNorm
  with their running statistics, exact for blocks every path shares). Discrete architectures' losses are kept by
  architecture, and the pool's activations after each stage by the configs of the stages before (``true_loss``).
  One oracle serves every target of a sweep, so all of this is paid for once.
* **Paired estimator** (``estimator="paired"``, default; search/probe.py). ∂F/∂α_{s,b,c} = P(slot exists) ·
  E[loss | config c at (s, b)] and ∂F/∂β_{s,j} = E[loss | depth j at s]: a probe draws one base path and runs every
  alternative of one slot (or stage depth) on it and on one mini-batch, so differences between alternatives carry
  no variance of the images or of the other slots. A table keeps each group's recent probes; a call probes
  ``probes`` groups (the first call, and a call at a one-hot point — the final step's linearisation at an
  architecture — every group) and returns the gradient of the whole table. No autograd graph at all.
* **Score estimator** (``estimator="score"``): ``paths`` independent paths per image in one multi-path pass
  (``forward_paths``), ∂F/∂α_{s,b,c} estimated by Σ_i A_i [c_i = c, slot exists] / (n_c + κ) with the leave-one-out
  advantage A_i = L_i − (mean loss of the other paths of the same image) and a pseudo-count κ (``prior``).
  Consistent (tested against the exact gradient of F by enumeration), but on a trained supernet its variance buried
  the per-config effects (docs/BENCHMARKS.md), and its per-config BatchNorm groups are a handful of samples.
* **Mixture estimator** (``estimator="mixture"``): the expected-output mixture of ``make_objective`` and its exact
  autograd gradient on the rotating mini-batch; averaged over one pass of the pool it is the full-pool mixture
  gradient (tested, running BN statistics). ``fixed_objective`` keeps the old oracle: the mixture on one fixed batch.
* **True objective of a discrete architecture** (``true_loss(arch)``): its single path on the whole pool in one
  batch (BatchNorm with the pool's own statistics, as the mixture objective normalises its batch). ``value`` at a
  one-hot point (``problem.objective_value``: projections, polish, selections) is this number and nothing else; a
  full call there returns it as the loss, so candidates are compared on the same images.

BatchNorm: the searchable blocks and the head use batch statistics (per alternative or config, as in training);
running statistics are restored after every call, the weights are never changed. With this oracle the searchers
stop early by default (``patience``, search/stopping.py) and end with a longer local search (``polish_evals``,
``polish_patience``, ``polish_stall``, polish.py).
"""
from __future__ import annotations

from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from profiler.space import Arch

from .data import Dataset, load_data
from .probe import PairedTable
from .stopping import ORACLE_PATIENCE, POLISH_EVALS, POLISH_PATIENCE, POLISH_STALL
from .supernet import Supernet, _is_onehot, frozen_bn_stats, make_objective

ESTIMATORS = ("paired", "score", "mixture")


class SupernetOracle:
    """``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` on a frozen supernet (see the module docstring).

    Args:
        net: the trained supernet (not modified).
        data: "digits", a path or a ``Dataset``; its validation split is the pool.
        estimator: "paired" (default), "score" or "mixture" (module docstring).
        images: validation images per probe ("paired") or per call.
        paths: paths drawn per image per call ("score"; ≥ 2 for the leave-one-out baseline).
        explore: ε, the uniform share of the sampling distribution.
        prior: κ, the pseudo-count shrinking rarely drawn configs' estimates towards 0 (the average).
        pool: at most this many validation images (a fixed seeded subset of a larger split).
        seed: seeds the permutation of the pool and the path draws.
        bn: "batch" (default: batch statistics, per config) or "running" (the supernet's running statistics, so
            every sample's loss is independent of the others'; used by the tests' exact comparisons).
        prefix_mib: memory for the pool's activations after each stage of evaluated architectures (``true_loss``).
        probes, memory: "paired": groups probed per call, and probes a table row averages (``probe.PairedTable``).
        patience: the searchers' default stopping rule with this oracle (search/stopping.py): stop once the argmax
            architecture is unchanged for this many steps (0: run the step cap).
    """

    def __init__(self, net: Supernet, data="digits", estimator: str = "paired", images: int = 32, paths: int = 4,
                 explore: float = 0.1, prior: float = 2.0, pool: int = 2048, seed: int = 0, bn: str = "batch",
                 patience: int = ORACLE_PATIENCE, prefix_mib: float = 128.0, probes: int = 1, memory: int = 4):
        if bn not in ("batch", "running"):
            raise ValueError(f"unknown bn mode {bn!r}; expected 'batch' or 'running'")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
        if paths < 2 or images < 1 or not 0.0 <= explore < 1.0 or prior < 0:
            raise ValueError(f"need paths >= 2, images >= 1, 0 <= explore < 1, prior >= 0; got paths={paths}, "
                             f"images={images}, explore={explore}, prior={prior}")
        self.net, self.estimator, self.batch_bn, self.patience = net, estimator, bn == "batch", patience
        # what the searchers default to with this oracle: bcsfw's direction averaging (the paired table averages
        # already), and a longer local search in the final discrete step (polish.py), whose values are exact
        self.momentum = 0.0 if estimator == "paired" else "decay"
        self.polish_evals, self.polish_patience, self.polish_stall = POLISH_EVALS, POLISH_PATIENCE, POLISH_STALL
        self.images, self.paths, self.explore, self.prior = images, paths, explore, prior
        ds: Dataset = load_data(data, net.settings.resolution)
        self.dtype = next(net.parameters()).dtype
        self.seed, self.probes, self.memory = seed, probes, memory
        n = len(ds.y_val)
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:pool].sort().values
        self.x, self.y = ds.x_val[keep].to(self.dtype), ds.y_val[keep]
        self.images = min(images, len(self.y))
        sp = net.space
        self.shapes = ((sp.n_stages, sp.max_depth, len(sp.configs)), (sp.n_stages, len(sp.depths)))
        self._stemmed: Optional[torch.Tensor] = None
        # _frozen sets these modules' mode directly: net.train() walks the tree at every call (a tenth of a polish)
        self._modules = list(net.modules())
        self._bns = [m for m in self._modules if isinstance(m, torch.nn.BatchNorm2d)]
        self.restart()  # the sampled state: draws, pool order, probe table
        self._true: Dict[str, float] = {}
        self._prefix: "OrderedDict[str, torch.Tensor]" = OrderedDict()  # stage configs so far -> pool activations
        self._prefix_bytes, self.prefix_mib = 0, prefix_mib
        self._at_arch: Dict[tuple, Tuple[float, np.ndarray, np.ndarray]] = {}  # one-hot point -> its paired call
        self.stats = {"calls": 0, "samples": 0, "stem_images": 0, "true_evals": 0, "true_hits": 0, "prefix_stages": 0,
                      "grad_hits": 0}

    def restart(self) -> None:
        """Start the sampled estimates afresh for the next target of a sweep: the seed's permutation and draws again,
        an empty probe table. What is exact stays (the stem, true losses, the prefix activations, probes at one-hot
        points), so a sweep's target searches like a single one at that target but pays less. Without this a looser
        target's search began with the tighter one's probes around its answer, and its argmax settled on them: at a
        loose target, a 3-target sweep found losses up to 15 % worse than the same target searched alone."""
        self.gen, self._order, self._pos = torch.Generator().manual_seed(self.seed), torch.empty(0, dtype=torch.long), 0
        self.table = PairedTable(self.net, self.probes, self.memory) if self.estimator == "paired" else None

    # --- cached work -------------------------------------------------------------------------------------------------
    def stemmed(self) -> torch.Tensor:
        """Stem + ds output of every pool image, computed on first use (running BN statistics: fixed blocks)."""
        if self._stemmed is None:
            net, was = self.net, self.net.training
            net.eval()
            try:
                with torch.no_grad():
                    self._stemmed = torch.cat([net._stem(self.x[i:i + 256]) for i in range(0, len(self.y), 256)])
            finally:
                net.train(was)
            self.stats["stem_images"] += len(self.y)
        return self._stemmed

    def next_batch(self) -> torch.Tensor:
        """Indices of the next ``images`` pool images; a fresh permutation when the pool is used up."""
        if self._pos + self.images > len(self._order):
            self._order, self._pos = torch.randperm(len(self.y), generator=self.gen), 0
        idx = self._order[self._pos:self._pos + self.images]
        self._pos += self.images
        return idx

    def true_loss(self, arch: Arch) -> float:
        """Cross-entropy of ``arch``'s single path on the whole pool (batch BN statistics), cached by arch string.

        The pool's activations after each stage are kept (least recently used dropped beyond ``prefix_mib``) by the
        configs of the stages before: an architecture that shares its first stages with one evaluated before — a
        local-search move, a sweep's neighbours — starts after them. The same operations as ``_forward_arch``."""
        key = str(arch)
        if key in self._true:
            self.stats["true_hits"] += 1
            return self._true[key]
        keys = [repr(arch.stages[:s]) for s in range(len(arch.stages))]
        start = max((s for s in range(1, len(keys)) if keys[s] in self._prefix), default=0)
        h = self._prefix[keys[start]] if start else self.stemmed()
        if start:
            self._prefix.move_to_end(keys[start])
        self.stats["prefix_stages"] += start
        with self._frozen(train=self.batch_bn), torch.no_grad():
            for s in range(start, len(keys)):
                if s > start:  # (the longest cached prefix is ``start``: these are new)
                    self._keep(keys[s], h)
                for c, block in zip(arch.stages[s], self.net.stages[s]):
                    h = block.forward_config(h, c)
            loss = float(F.cross_entropy(self.net.head(h), self.y))
        self._true[key] = loss
        self.stats["true_evals"] += 1
        return loss

    def _keep(self, key: str, h: torch.Tensor) -> None:
        if self.prefix_mib <= 0:
            return
        self._prefix[key] = h
        self._prefix_bytes += h.numel() * h.element_size()
        while self._prefix_bytes > self.prefix_mib * 2 ** 20 and len(self._prefix) > 1:
            _, old = self._prefix.popitem(last=False)
            self._prefix_bytes -= old.numel() * old.element_size()

    # --- the oracle --------------------------------------------------------------------------------------------------
    def value(self, alpha: np.ndarray, beta: np.ndarray) -> float:
        """f alone (``problem.objective_value``): a one-hot point's ``true_loss``, without the sampled gradient pass;
        otherwise a call's loss."""
        a, b = torch.as_tensor(np.asarray(alpha)), torch.as_tensor(np.asarray(beta))
        if _is_onehot(a) and _is_onehot(b) and a.shape == self.shapes[0] and b.shape == self.shapes[1]:
            return self.true_loss(self.net.to_arch(a, b))
        return self(alpha, beta)[0]

    def __call__(self, alpha: np.ndarray, beta: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        if np.shape(alpha) != self.shapes[0] or np.shape(beta) != self.shapes[1]:
            raise ValueError(f"alpha, beta shapes {np.shape(alpha)}, {np.shape(beta)}; expected {self.shapes}")
        a = torch.tensor(np.asarray(alpha), dtype=self.dtype)
        b = torch.tensor(np.asarray(beta), dtype=self.dtype)
        onehot = _is_onehot(a) and _is_onehot(b)
        key = (a.argmax(-1).numpy().tobytes(), b.argmax(-1).numpy().tobytes()) if onehot else None
        if key in self._at_arch:  # a linearisation at an architecture seen before (polish, another target)
            self.stats["grad_hits"] += 1
            loss, ga, gb = self._at_arch[key]
            return loss, ga.copy(), gb.copy()
        self.stats["calls"] += 1
        if self.estimator == "paired":
            loss, ga, gb = self._paired(a, b)
        elif self.estimator == "mixture":
            loss, ga, gb = self._mixture(a, b, self.next_batch())
        else:
            loss, ga, gb = self._score(a, b, self.next_batch())
        if onehot:  # a discrete candidate: its deterministic true loss
            loss = self.true_loss(self.net.to_arch(a, b))
        out = loss, ga.numpy().astype(np.float64), gb.numpy().astype(np.float64)
        if onehot and self.estimator == "paired":  # a fresh probe of every group: kept for the next time
            self._at_arch[key] = (out[0], out[1].copy(), out[2].copy())
        return out

    @contextmanager
    def _frozen(self, train: bool) -> Iterator[None]:
        """BN mode ``train`` (batch statistics) inside; running statistics and the net's mode restored after."""
        was = self.net.training
        try:
            with frozen_bn_stats(self.net, self._bns):
                for m in self._modules:  # what Module.train sets, without Module.__setattr__'s checks
                    m.__dict__["training"] = train
                yield
        finally:
            for m in self._modules:
                m.__dict__["training"] = was

    def _mixture(self, a, b, idx):
        a.requires_grad_(True)
        b.requires_grad_(True)
        with self._frozen(train=self.batch_bn):
            loss = F.cross_entropy(self.net._forward_mixture(self.stemmed()[idx], a, b, stemmed=True), self.y[idx])
            ga, gb = torch.autograd.grad(loss, [a, b])
        self.stats["samples"] += len(idx)
        return float(loss.detach()), ga.detach(), gb.detach()

    def _paired(self, a, b):
        eps, sp = self.explore, self.net.space
        qa = (1 - eps) * a.clamp(min=0) + eps / a.shape[-1]
        qb = (1 - eps) * b.clamp(min=0) + eps / b.shape[-1]
        with self._frozen(train=self.batch_bn), torch.no_grad():
            # at an architecture (one-hot: polish's linearisation) every group is probed around it
            loss = self.table.refresh(self, qa, qb, self.gen, every=_is_onehot(a) and _is_onehot(b))
        deeper = torch.tensor(sp.depths)[None, None, :] > torch.arange(sp.max_depth)[None, :, None]  # (1, B, D)
        exists = (qb[:, None, :] * deeper).sum(-1)  # P(slot (s, b) exists) under qb: (S, B)
        ga = (1 - eps) * exists[..., None] * self.table.t_alpha.to(a.dtype)
        return loss, ga, (1 - eps) * self.table.t_beta.to(b.dtype)

    def draw(self, a: torch.Tensor, b: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """n paths from (1 − ε)(α, β) + ε·uniform: configs (n, S, B) and depth indices (n, S)."""
        eps = self.explore
        qa = ((1 - eps) * a.clamp(min=0) + eps / a.shape[-1]).reshape(-1, a.shape[-1])
        qb = (1 - eps) * b.clamp(min=0) + eps / b.shape[-1]
        cfg = torch.multinomial(qa, n, replacement=True, generator=self.gen).t().reshape(n, *a.shape[:-1])
        depth = torch.multinomial(qb, n, replacement=True, generator=self.gen).t()
        return cfg, depth

    def sampled_losses(self, a: torch.Tensor, b: torch.Tensor, idx: torch.Tensor):
        """Per-sample losses of ``paths`` drawn paths for each image of ``idx``: (L (K·m,), cfg, depth)."""
        m, k = len(idx), self.paths
        cfg, depth = self.draw(a, b, m * k)
        h = self.stemmed()[idx.repeat(k)]  # sample j is image j % m; indexing keeps channels_last, repeat() would not
        with self._frozen(train=self.batch_bn), torch.no_grad():
            logits = self.net._forward_paths(h, cfg, depth, stemmed=True)
        self.stats["samples"] += m * k
        return F.cross_entropy(logits, self.y[idx].repeat(k), reduction="none"), cfg, depth

    def _score(self, a, b, idx):
        L, cfg, depth = self.sampled_losses(a, b, idx)
        m, k = len(idx), self.paths
        per = L.reshape(k, m)
        adv = (per - (per.sum(0, keepdim=True) - per) / (k - 1)).reshape(-1)  # leave-one-out baseline per image
        sp = self.net.space
        depths = torch.tensor(sp.depths)[depth]  # (n, S)
        exists = torch.arange(sp.max_depth)[None, None] < depths[:, :, None]  # (n, S, B)
        oh = F.one_hot(cfg, a.shape[-1]).to(a.dtype)  # (n, S, B, C)
        num = torch.einsum("n,nsbc->sbc", adv, oh * exists[..., None].to(a.dtype))
        ga = (1 - self.explore) * num / (oh.sum(0) + self.prior).clamp(min=1e-12)  # never drawn: 0, not 0/0
        ohb = F.one_hot(depth, b.shape[-1]).to(b.dtype)  # (n, S, D)
        gb = (1 - self.explore) * torch.einsum("n,nsd->sd", adv, ohb) / (ohb.sum(0) + self.prior).clamp(min=1e-12)
        return float(L.mean()), ga, gb


def fixed_objective(net: Supernet, batch: Tuple[torch.Tensor, torch.Tensor]):
    """``make_objective`` on one fixed batch (the full expected-output mixture: ``search --oracle fixed``, the
    reference of the tests and benchmarks) with a ``value(alpha, beta)`` that runs without autograd, so a one-hot point
    takes its single path instead of all 12 configs of every slot: the same number (x·1 + 0 terms), far less work."""
    objective = make_objective(net, batch)
    x, y = batch[0].to(next(net.parameters()).dtype), batch[1]

    def value(alpha: np.ndarray, beta: np.ndarray) -> float:
        a, b = (torch.tensor(np.asarray(t), dtype=x.dtype) for t in (alpha, beta))
        was = net.training
        try:
            with torch.no_grad(), frozen_bn_stats(net):
                net.train()
                return float(F.cross_entropy(net(x, a, b), y))
        finally:
            net.train(was)

    objective.value = value
    return objective
