"""The searchers' stochastic oracle on a frozen supernet: rotating mini-batches, sampled paths, cached work.

``SupernetOracle(net, data)`` is an ``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` (the interface every
searcher takes) whose calls are cheap enough for Block-Coordinate *Stochastic* Frank-Wolfe:

* **Rotating mini-batches.** Each call takes the next ``images`` validation images of a seeded permutation of the
  pool (the validation split, or a fixed subset of ``pool`` images of a larger one); a new permutation starts when
  the pool is used up, so every image is seen equally often.
* **Cached fixed part.** The stem and the fixed ds block do not depend on α, β: they run once per pool image
  (BatchNorm with their running statistics, exact for blocks every path shares) and are kept; a call starts at the
  first searchable block. A sweep over targets with one oracle pays for them once.
* **Sampled estimator** (``estimator="sampled"``, default). The target is F(α, β) = E_{path ~ (α, β)} [loss], the
  expected loss of the architectures that eqs. (4), (5) sample — the quantity HardCoRe-NAS's search optimises with
  sampled paths — rather than the loss of the expected-output mixture. Each of ``images`` images is run with
  ``paths`` independently drawn paths, all in one multi-path pass (each layer once per batch, ``forward_paths``)
  under ``torch.no_grad``: no autograd graph at all, so memory does not grow with the 12 configs per slot. The
  gradient is the score-function (REINFORCE) estimate: ∂F/∂α_{s,b,c} = P(exists) · E[loss | config c at (s, b)]
  up to a constant per slot (which no linear minimisation over a simplex sees), estimated by
  Σ_i A_i [c_i = c, slot exists] / (n_c + κ), with the advantage A_i = L_i − (mean loss of the other paths of the
  same image) — a leave-one-out baseline, independent of sample i's path, that removes the variance due to the
  image — and a pseudo-count κ (``prior``) that shrinks configs drawn a handful of times towards the average. Paths
  are drawn from (1 − ε)(α, β) + ε·uniform (ε = ``explore``) so that configs the iterate has left keep being
  measured; the estimate is then that of F at the smoothed point, times (1 − ε) (the chain rule). Consistent as the
  number of draws grows (tested against the exact gradient of F by enumeration).
* **Mixture estimator** (``estimator="mixture"``): the expected-output mixture of ``make_objective`` and its exact
  autograd gradient, on the rotating mini-batch; averaged over one pass of the pool it is the full-pool mixture
  gradient (tested). ``make_objective`` itself (one fixed batch) is unchanged.
* **True objective of a discrete architecture** (``true_loss(arch)``): its single path on the whole pool in one
  batch (BatchNorm with the pool's own statistics, as the mixture objective normalises its batch), cached by the
  architecture's string. A call with one-hot α and β — a searcher's projection ranking its candidates — returns
  this deterministic value as the loss, so candidates are compared on the same images, not on different batches.

BatchNorm: the searchable blocks and the head use batch statistics (per config, over the samples that drew it, as
in training); running statistics are restored after every call, the weights are never changed.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from profiler.space import Arch

from .data import Dataset, load_data
from .supernet import Supernet, _is_onehot, frozen_bn_stats

ESTIMATORS = ("sampled", "mixture")


class SupernetOracle:
    """``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` on a frozen supernet (see the module docstring).

    Args:
        net: the trained supernet (not modified).
        data: "digits", a path or a ``Dataset``; its validation split is the pool.
        estimator: "sampled" (score function over per-sample paths, default) or "mixture" (exact mixture gradient).
        images: validation images per call.
        paths: paths drawn per image per call ("sampled"; ≥ 2 for the leave-one-out baseline).
        explore: ε, the uniform share of the sampling distribution.
        prior: κ, the pseudo-count shrinking rarely drawn configs' estimates towards 0 (the average).
        pool: at most this many validation images (a fixed seeded subset of a larger split).
        seed: seeds the permutation of the pool and the path draws.
        bn: "batch" (default: batch statistics, per config) or "running" (the supernet's running statistics, so
            every sample's loss is independent of the others'; used by the tests' exact comparisons).
    """

    def __init__(self, net: Supernet, data="digits", estimator: str = "sampled", images: int = 32, paths: int = 4,
                 explore: float = 0.1, prior: float = 2.0, pool: int = 2048, seed: int = 0, bn: str = "batch"):
        if bn not in ("batch", "running"):
            raise ValueError(f"unknown bn mode {bn!r}; expected 'batch' or 'running'")
        if estimator not in ESTIMATORS:
            raise ValueError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")
        if paths < 2 or images < 1 or not 0.0 <= explore < 1.0 or prior < 0:
            raise ValueError(f"need paths >= 2, images >= 1, 0 <= explore < 1, prior >= 0; got paths={paths}, "
                             f"images={images}, explore={explore}, prior={prior}")
        self.net, self.estimator, self.batch_bn = net, estimator, bn == "batch"
        self.images, self.paths, self.explore, self.prior = images, paths, explore, prior
        ds: Dataset = load_data(data, net.settings.resolution)
        self.dtype = next(net.parameters()).dtype
        self.gen = torch.Generator().manual_seed(seed)
        n = len(ds.y_val)
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:pool].sort().values
        self.x, self.y = ds.x_val[keep].to(self.dtype), ds.y_val[keep]
        self.images = min(images, len(self.y))
        sp = net.space
        self.shapes = ((sp.n_stages, sp.max_depth, len(sp.configs)), (sp.n_stages, len(sp.depths)))
        self._stemmed: Optional[torch.Tensor] = None
        self._order, self._pos = torch.empty(0, dtype=torch.long), 0
        self._true: Dict[str, float] = {}
        self.stats = {"calls": 0, "samples": 0, "stem_images": 0, "true_evals": 0, "true_hits": 0}

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
        """Cross-entropy of ``arch``'s single path on the whole pool (batch BN statistics), cached by arch string."""
        key = str(arch)
        if key in self._true:
            self.stats["true_hits"] += 1
            return self._true[key]
        h = self.stemmed()
        with self._frozen(train=self.batch_bn), torch.no_grad():
            loss = float(F.cross_entropy(self.net._forward_arch(h, arch, stemmed=True), self.y))
        self._true[key] = loss
        self.stats["true_evals"] += 1
        return loss

    # --- the oracle --------------------------------------------------------------------------------------------------
    def __call__(self, alpha: np.ndarray, beta: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
        if np.shape(alpha) != self.shapes[0] or np.shape(beta) != self.shapes[1]:
            raise ValueError(f"alpha, beta shapes {np.shape(alpha)}, {np.shape(beta)}; expected {self.shapes}")
        a = torch.tensor(np.asarray(alpha), dtype=self.dtype)
        b = torch.tensor(np.asarray(beta), dtype=self.dtype)
        self.stats["calls"] += 1
        idx = self.next_batch()
        if self.estimator == "mixture":
            loss, ga, gb = self._mixture(a, b, idx)
        else:
            loss, ga, gb = self._sampled(a, b, idx)
        if _is_onehot(a) and _is_onehot(b):  # a discrete candidate: its deterministic true loss
            loss = self.true_loss(self.net.to_arch(a, b))
        return loss, ga.numpy().astype(np.float64), gb.numpy().astype(np.float64)

    @contextmanager
    def _frozen(self, train: bool) -> Iterator[None]:
        """BN mode ``train`` (batch statistics) inside; running statistics and the net's mode restored after."""
        was = self.net.training
        try:
            with frozen_bn_stats(self.net):
                self.net.train(train)
                yield
        finally:
            self.net.train(was)

    def _mixture(self, a, b, idx):
        a.requires_grad_(True)
        b.requires_grad_(True)
        with self._frozen(train=self.batch_bn):
            loss = F.cross_entropy(self.net._forward_mixture(self.stemmed()[idx], a, b, stemmed=True), self.y[idx])
            ga, gb = torch.autograd.grad(loss, [a, b])
        self.stats["samples"] += len(idx)
        return float(loss.detach()), ga.detach(), gb.detach()

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
        h = self.stemmed()[idx].repeat(k, 1, 1, 1)  # sample j is image j % m
        with self._frozen(train=self.batch_bn), torch.no_grad():
            logits = self.net._forward_paths(h, cfg, depth, stemmed=True)
        self.stats["samples"] += m * k
        return F.cross_entropy(logits, self.y[idx].repeat(k), reduction="none"), cfg, depth

    def _sampled(self, a, b, idx):
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
