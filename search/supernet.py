"""One-shot supernet of the HardCoRe-NAS space with multi-path (per-sample) sampling.

HardCoRe-NAS (Nayman et al., ICML 2021) trains one network that holds every architecture of the space, each
(stage, slot) an *elastic* inverted residual whose 12 configs share weights. During training every sample of a batch
draws its own sub-network with the Gumbel-softmax trick from the block distribution α (eq. 4) and the depth
distribution β (eq. 5), uniform α and β while training the weights. Compared with one path per batch (single-path,
SPOS) this lowers the variance of the weight gradients; the paper reports a Kendall τ of 0.95 vs 0.6 between
one-shot and stand-alone accuracies.

With relaxed (not one-hot) α, β the forward pass returns the expected output: a block's output is
Σ_c α_c · O_c(x) and a stage's output is Σ_d β_d · x_d (x_d the output after d blocks), i.e. the continuous
relaxation that eqs. (4), (5) sample from. It is differentiable in α and β, which is what the searchers need
(``make_objective``).

Weight sharing, per elastic block (all views of one parameter per layer, so every config trains the same storage):

* expansion: the first ``mid(e)`` channels of the e=6 weights (pw conv, depthwise, SE, pwl, their BN);
* kernel: k=3 is the centre 3×3 of the k=5 depthwise kernel. Chosen over separate k=3 weights because the
  centre taps are the ones a 5×5 kernel learns most from, so k=3 paths inherit what k=5 paths learnt and the
  supernet has one depthwise tensor per block; Once-for-All shares kernels the same way (we skip its 3×3 transform
  matrix: at the supernet's small resolutions the deepest stages see 1×1 to 4×4 maps where k3 and k5 barely differ);
* squeeze-excite: reduce/expand convs sliced to the active mid channels and to ``BlockSpec.se_ch`` reduced channels.

Two execution paths give the same function (tested): sliced weights for a fixed sub-network (``arch=``, single-path,
and every term of the relaxed mixture), and channel/sample masks over the largest weights for per-sample paths,
which runs each layer once per batch instead of once per config.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from profiler.errors import BadInput
from profiler.nets import ConvBnAct, DepthwiseSeparable, Head, act_layer
from profiler.space import HARDCORE, Arch, BlockSpec, Space, Stage, make_divisible

CHECKPOINT_FORMAT = "lutnas-supernet"
# History: 1 — state_dict, settings (space, resolution, width, classes), space_hash, extra (training state).
CHECKPOINT_VERSION = 1


class SupernetError(BadInput):
    """Base of supernet, checkpoint and data errors (the CLI prints one line and exits with BAD_INPUT)."""


class CheckpointError(SupernetError):
    """A checkpoint is missing, unreadable or not a supernet checkpoint."""


class CheckpointMismatch(SupernetError):
    """A checkpoint was trained for another version of the search space (its hash differs)."""


@dataclass(frozen=True)
class SupernetSettings:
    space: str = HARDCORE.name
    resolution: int = 32  # pixels; the supernet's training resolution, not the LUT's 224
    width: float = 1.0  # channel multiplier applied to every layer of the space
    classes: int = 10


def scaled_space(space: Space, s: SupernetSettings) -> Space:
    """The space at the supernet's resolution, width and class count (the LUT keeps the original)."""
    w = lambda ch: make_divisible(ch * s.width)  # noqa: E731
    return dataclasses.replace(
        space, resolution=s.resolution, stem_out=w(space.stem_out), ds_out=w(space.ds_out),
        stages=tuple(Stage(w(st.out), st.stride, st.act) for st in space.stages),
        head_out=w(space.head_out), head_features=w(space.head_features), classes=s.classes)


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, ch: int, mask: Optional[torch.Tensor] = None,
        groups: Optional[torch.Tensor] = None) -> torch.Tensor:
    """BatchNorm over the first ``ch`` channels of ``bn``, for one path or for per-sample paths.

    With per-sample paths, ``mask`` (N, ch) marks the channels each sample's config uses and ``groups`` (N, G) one-hot
    marks its config. Training statistics are then taken per config over the samples that chose it — exactly what
    running every config on its own sub-batch would compute. Pooling them over all samples instead mixes paths of
    different scale (e3 vs e6 sums, SE gates) in one normalisation. Either way a batch of 64 leaves ~5 samples per
    config and a multi-path supernet did not learn on digits (loss stuck at 2.3); at 256 it does, hence the
    training default. Inactive channels stay exactly zero, so the masked network computes the sliced one.
    """
    rm, rv, w, b = bn.running_mean[:ch], bn.running_var[:ch], bn.weight[:ch], bn.bias[:ch]
    mom = bn.momentum
    if mask is None:
        # BN cannot take batch statistics from one value per channel (a 1-sample sub-batch at 1×1): use running ones.
        train = bn.training and x.shape[0] * x.shape[2] * x.shape[3] > 1
        return F.batch_norm(x, rm, rv, w, b, train, mom, bn.eps)
    m4 = mask[:, :, None, None]
    if not bn.training:
        return F.batch_norm(x, rm, rv, w, b, False, mom, bn.eps) * m4
    gt = groups.t()  # (G, N)
    cnt = (gt @ mask) * (x.shape[2] * x.shape[3])  # (G, ch) values behind each group's statistics
    ok = cnt > 1
    safe = cnt.clamp(min=1)
    # Σ over the masked map = mask · Σ over the map (mask is per sample and channel): two passes over x, not four.
    mean = (gt @ (x.sum((2, 3)) * mask)) / safe
    var = ((gt @ ((x * x).sum((2, 3)) * mask)) / safe - mean * mean).clamp(min=0)
    with torch.no_grad():  # running statistics: count-weighted average of the groups' (unbiased) statistics
        wt = cnt * ok
        tot = wt.sum(0)
        has = tot > 0
        pm = (wt * mean).sum(0) / tot.clamp(min=1)
        pv = (wt * var * safe / (safe - 1).clamp(min=1)).sum(0) / tot.clamp(min=1)
        rm.copy_(torch.where(has, (1 - mom) * rm + mom * pm, rm))
        rv.copy_(torch.where(has, (1 - mom) * rv + mom * pv, rv))
    mean = torch.where(ok, mean, rm[None])  # a group with one value per channel falls back to running statistics
    var = torch.where(ok, var, rv[None])
    mean_n, inv_n = groups @ mean, groups @ torch.rsqrt(var + bn.eps)  # each sample gets its group's statistics
    # ((x − mean) · inv · w + b) · mask as one scale and shift per (sample, channel): one fused pass over x.
    scale = inv_n * w[None] * mask
    shift = (b[None] - mean_n * inv_n * w[None]) * mask
    return torch.addcmul(shift[:, :, None, None], x, scale[:, :, None, None])


def _dw_conv(x: torch.Tensor, w: torch.Tensor, stride: int) -> torch.Tensor:
    """Depthwise 'same' convolution with kernel ``w`` (C, 1, k, k), cropped to the taps that can touch the input.

    On an H×H map a tap further than H-1 from the centre only ever meets padding, so cropping to 2H-1 is exact; it
    matters because CPU depthwise backward on the deep 1×1 and 2×2 maps of a 32-pixel supernet is slow. It also makes
    k=3 and k=5 one computation there (k=3 is k=5's centre).
    """
    k, h = w.shape[-1], x.shape[-1]
    kk = min(k, 2 * h - 1)
    off = (k - kk) // 2
    if kk == 1:  # 1×1 map: a per-channel scale
        return x * w[:, 0, off, off][None, :, None, None]
    return F.conv2d(x, w[:, :, off:off + kk, off:off + kk], stride=stride, padding=kk // 2, groups=x.shape[1])


class ElasticIR(nn.Module):
    """One (stage, slot) of the space: the inverted residuals of all configs, sharing the largest one's weights."""

    def __init__(self, specs: List[BlockSpec]):
        super().__init__()
        b0 = specs[0]
        self.i, self.o, self.s, self.residual = b0.i, b0.o, b0.s, b0.residual
        self.act = act_layer(b0.act)
        self.mids = [b.mid for b in specs]
        # Reduced SE channels of each config's expansion, also for se=0 configs (their SE is simply not applied).
        self.rds = [dataclasses.replace(b, se=1).se_ch for b in specs]
        self.ks = [b.k for b in specs]
        self.ses = [b.se for b in specs]
        M, R, K = max(self.mids), max(self.rds), max(self.ks)
        self.K = K
        self.pw = nn.Conv2d(self.i, M, 1, bias=False)
        self.pw_bn = nn.BatchNorm2d(M)
        self.dw = nn.Conv2d(M, M, K, self.s, padding=K // 2, groups=M, bias=False)
        self.dw_bn = nn.BatchNorm2d(M)
        self.se_reduce = nn.Conv2d(M, R, 1)
        self.se_expand = nn.Conv2d(R, M, 1)
        self.pwl = nn.Conv2d(M, self.o, 1, bias=False)
        self.pwl_bn = nn.BatchNorm2d(self.o)
        for name, v in (("mids_t", self.mids), ("rds_t", self.rds), ("ks_t", self.ks), ("ses_t", self.ses)):
            self.register_buffer(name, torch.tensor(v), persistent=False)

    def weights(self, c: int) -> Dict[str, torch.Tensor]:
        """Views of the shared parameters that config ``c`` uses (same storage as the e=6/k=5 tensors)."""
        m, r, k = self.mids[c], self.rds[c], self.ks[c]
        off = (self.K - k) // 2
        return {
            "pw": self.pw.weight[:m], "dw": self.dw.weight[:m, :, off:off + k, off:off + k],
            "se_reduce": self.se_reduce.weight[:r, :m], "se_reduce_b": self.se_reduce.bias[:r],
            "se_expand": self.se_expand.weight[:m, :r], "se_expand_b": self.se_expand.bias[:m],
            "pwl": self.pwl.weight[:, :m],
        }

    def forward_config(self, x: torch.Tensor, c: int) -> torch.Tensor:
        """The block with config ``c`` (α order) on the whole batch, from sliced weights."""
        w, m, = self.weights(c), self.mids[c]
        h = self.act(_bn(F.conv2d(x, w["pw"]), self.pw_bn, m))
        h = self.act(_bn(_dw_conv(h, w["dw"], self.s), self.dw_bn, m))
        if self.ses[c]:
            g = F.relu(F.conv2d(h.mean((2, 3), keepdim=True), w["se_reduce"], w["se_reduce_b"]))
            h = h * F.hardsigmoid(F.conv2d(g, w["se_expand"], w["se_expand_b"]))
        y = _bn(F.conv2d(h, w["pwl"]), self.pwl_bn, self.o)
        return x + y if self.residual else y

    def forward_paths(self, x: torch.Tensor, cfg: torch.Tensor, exists: Optional[torch.Tensor]) -> torch.Tensor:
        """Per-sample configs ``cfg`` (N,) and block presence ``exists`` (N,) bool (None: all present), by masks."""
        if exists is not None and not bool(exists.any()):
            return x
        uniq = torch.unique(cfg if exists is None else cfg[exists])
        if len(uniq) == 1 and (exists is None or bool(exists.all())):
            return self.forward_config(x, int(uniq))  # one config for all: the cheaper sliced path
        M = self.pw.out_channels
        present = torch.ones_like(cfg, dtype=x.dtype) if exists is None else exists.to(x.dtype)
        chan = torch.arange(M, device=x.device)
        cmask = (chan[None] < self.mids_t[cfg][:, None]).to(x.dtype) * present[:, None]
        groups = F.one_hot(cfg, len(self.mids)).to(x.dtype) * present[:, None]  # per-config BN statistics
        h = self.act(_bn(F.conv2d(x, self.pw.weight), self.pw_bn, M, cmask, groups))
        # Effective kernel per sample: on small maps k=5 crops to k=3's taps (see _dw_conv), one conv serves both.
        keff = self.ks_t[cfg].clamp(max=2 * h.shape[-1] - 1)
        outs = {}
        for k in sorted(set(keff.tolist())):
            off = (self.K - k) // 2
            outs[k] = _dw_conv(h, self.dw.weight[:, :, off:off + k, off:off + k], self.s)
        d = outs.popitem()[1] if len(outs) == 1 else torch.where((keff == max(outs))[:, None, None, None],
                                                                 outs[max(outs)], outs[min(outs)])
        h = self.act(_bn(d, self.dw_bn, M, cmask, groups))
        se = self.ses_t[cfg].bool()
        if bool(se.any()):
            R = self.se_reduce.out_channels
            rmask = (torch.arange(R, device=x.device)[None] < self.rds_t[cfg][:, None]).to(x.dtype)
            g = F.relu(self.se_reduce(h.mean((2, 3), keepdim=True))) * rmask[:, :, None, None]
            h = torch.where(se[:, None, None, None], h * F.hardsigmoid(self.se_expand(g)), h)
        y = _bn(self.pwl(h), self.pwl_bn, self.o, present[:, None].expand(-1, self.o), groups)
        return x + y if self.residual else y


def gumbel_softmax(probs: torch.Tensor, tau: float = 1.0, hard: bool = True,
                   generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Eqs. (4), (5): softmax((log p + G) / τ) over the last axis, G ~ Gumbel(0, 1); one-hot (straight-through) if hard."""
    # G = -log(E) with E ~ Exp(1) is Gumbel(0, 1) (as torch's own gumbel_softmax draws it), but takes a generator.
    e = torch.empty(probs.shape, dtype=probs.dtype, device=probs.device).exponential_(generator=generator)
    g = -torch.log(e.clamp(min=1e-20))
    y = torch.softmax((torch.log(probs.clamp(min=1e-20)) + g) / tau, dim=-1)
    if not hard:
        return y
    onehot = F.one_hot(y.argmax(-1), y.shape[-1]).to(y.dtype)
    if not probs.requires_grad:
        return onehot  # exactly 0/1, so forward() recognises per-sample paths and takes the masked fast path
    return onehot - y.detach() + y  # straight-through: forward one-hot, gradient of the soft sample


class Supernet(nn.Module):
    """The one-shot network: stem, fixed ds block, 5 stages × 4 elastic slots, head (classifier for ``classes``)."""

    def __init__(self, space: Space = HARDCORE, resolution: int = 32, width: float = 1.0, classes: int = 10):
        super().__init__()
        if resolution < 8 or width <= 0 or classes < 2:
            raise SupernetError(f"bad supernet settings: resolution={resolution!r} width={width!r} "
                                f"classes={classes!r} (need resolution ≥ 8, width > 0, classes ≥ 2)")
        self.space = space
        self.settings = SupernetSettings(space.name, resolution, width, classes)
        self.net_space = scaled_space(space, self.settings)
        stem, ds, head = self.net_space.fixed_blocks()
        self.stem = ConvBnAct(stem.i, stem.o, stem.k, stem.s, act=stem.act)
        self.ds = DepthwiseSeparable(ds)
        self.stages = nn.ModuleList(
            nn.ModuleList(ElasticIR([self.net_space.block(s, b, c) for c in space.configs])
                          for b in range(space.max_depth))
            for s in range(space.n_stages))
        self.head = Head(head)
        self.mode = "multipath"  # or "singlepath": how forward(x) samples paths while training
        self.generator: Optional[torch.Generator] = None  # path sampling RNG; training seeds it per epoch

    # --- sampling ----------------------------------------------------------------------------------------------------
    def uniform(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Uniform α (stages, max_depth, configs) and β (stages, depths): the training distribution."""
        sp = self.space
        a = torch.full((sp.n_stages, sp.max_depth, len(sp.configs)), 1.0 / len(sp.configs))
        return a, torch.full((sp.n_stages, len(sp.depths)), 1.0 / len(sp.depths))

    def sample(self, n: int, alpha: Optional[torch.Tensor] = None, beta: Optional[torch.Tensor] = None,
               tau: float = 1.0, hard: bool = True, generator: Optional[torch.Generator] = None):
        """Per-sample paths: one-hot α̂ (n, S, B, C) and β̂ (n, S, D) drawn by eqs. (4), (5) from α, β (uniform)."""
        ua, ub = self.uniform()
        a = ua if alpha is None else torch.as_tensor(alpha, dtype=torch.float32)
        b = ub if beta is None else torch.as_tensor(beta, dtype=torch.float32)
        return (gumbel_softmax(a.expand(n, *a.shape), tau, hard, generator),
                gumbel_softmax(b.expand(n, *b.shape), tau, hard, generator))

    def to_arch(self, alpha: torch.Tensor, beta: torch.Tensor) -> Arch:
        """The discrete architecture of one path (argmax of α (S, B, C) and β (S, D))."""
        from .decode import to_arch

        return to_arch(self.space, alpha.detach().cpu().numpy(), beta.detach().cpu().numpy())

    # --- forward -----------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, alpha=None, beta=None, arch: Optional[Arch] = None) -> torch.Tensor:
        """Logits of the supernet.

        Args:
            x: images (N, 3, R, R).
            alpha: block weights (S, B, C) shared by the batch or (N, S, B, C) per sample; one-hot rows are paths,
                relaxed rows give the expected output Σ_c α_c O_c(x).
            beta: depth weights (S, D) or (N, S, D), same rules (stage output Σ_d β_d x_d).
            arch: a fixed sub-network; overrides alpha/beta.
            With neither: sample paths from uniform α, β, one per sample (``mode == "multipath"``) or one per batch.
        """
        if arch is not None:
            return self._forward_arch(x, arch)
        if alpha is None and beta is None:
            if self.mode == "singlepath":
                a, b = self.sample(1, generator=self.generator)
                return self._forward_arch(x, self.to_arch(a[0], b[0]))
            if self.mode != "multipath":
                raise SupernetError(f"unknown sampling mode {self.mode!r}; expected 'multipath' or 'singlepath'")
            alpha, beta = self.sample(x.shape[0], generator=self.generator)
        ua, ub = self.uniform()
        alpha = ua if alpha is None else torch.as_tensor(alpha)
        beta = ub if beta is None else torch.as_tensor(beta)
        alpha, beta = alpha.to(x.dtype), beta.to(x.dtype)
        grad = alpha.requires_grad or beta.requires_grad
        if not grad and _is_onehot(alpha) and _is_onehot(beta):
            if alpha.dim() == 3 and beta.dim() == 2:
                return self._forward_arch(x, self.to_arch(alpha, beta))
            n = x.shape[0]
            return self._forward_paths(x, alpha.expand(n, *alpha.shape[-3:]).argmax(-1),
                                       beta.expand(n, *beta.shape[-2:]).argmax(-1))
        return self._forward_mixture(x, alpha, beta)

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: CPU (oneDNN) depthwise convolutions, forward and backward, run 2–5× faster in it.
        return self.ds(self.stem(x.contiguous(memory_format=torch.channels_last)))

    def _forward_arch(self, x: torch.Tensor, arch: Arch, stemmed: bool = False) -> torch.Tensor:
        x = x if stemmed else self._stem(x)
        for blocks, stage in zip(arch.stages, self.stages):
            for c, block in zip(blocks, stage):
                x = block.forward_config(x, c)
        return self.head(x)

    def _forward_paths(self, x: torch.Tensor, cfg: torch.Tensor, depth: torch.Tensor,
                       stemmed: bool = False) -> torch.Tensor:
        """cfg (N, S, B) config indices, depth (N, S) indices into ``space.depths``; ``stemmed``: x is ``_stem``'s."""
        depths = torch.tensor(self.space.depths)[depth]
        x = x if stemmed else self._stem(x)
        for s, stage in enumerate(self.stages):
            for b, block in enumerate(stage):
                # Slots beyond a stage's shortest depth exist only for the samples whose depth reaches them.
                exists = None if b < min(self.space.depths) else depths[:, s] > b
                x = block.forward_paths(x, cfg[:, s, b], exists)
        return self.head(x)

    def _forward_mixture(self, x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor,
                         stemmed: bool = False) -> torch.Tensor:
        per_sample = lambda w: w.reshape(-1, *([1] * 3)) if w.dim() == 1 else w  # noqa: E731
        x = x if stemmed else self._stem(x)
        for s, stage in enumerate(self.stages):
            outs = []
            for b, block in enumerate(stage):
                w = alpha[..., s, b, :]
                # Without gradients a config nobody weights adds nothing; with them, ∂/∂α_c = O_c(x) is needed.
                keep = None if w.requires_grad else (w.reshape(-1, w.shape[-1]) != 0).any(0)
                y = 0
                for c in range(w.shape[-1]):
                    if keep is None or bool(keep[c]):
                        y = y + per_sample(w[..., c]) * block.forward_config(x, c)
                x = y
                if b + 1 in self.space.depths:
                    outs.append(x)
            x = sum(per_sample(beta[..., s, d]) * o for d, o in enumerate(outs))
        return self.head(x)


def _is_onehot(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all()) and bool((t.sum(-1) == 1).all())


@contextmanager
def frozen_bn_stats(net: nn.Module, bns: Optional[List[nn.BatchNorm2d]] = None) -> Iterator[None]:
    """Restore every BatchNorm's running statistics and momentum on exit (``bns``: the net's, if known)."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)] if bns is None else bns
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone(), m.momentum) for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (rm, rv, nb, mom) in zip(bns, saved):
                m.running_mean.copy_(rm)
                m.running_var.copy_(rv)
                m.num_batches_tracked.copy_(nb)
                m.momentum = mom


# --- search-time objective ---------------------------------------------------------------------------------------------
def make_objective(supernet: Supernet, val_batch: Tuple[torch.Tensor, torch.Tensor],
                   loss_fn: Callable = F.cross_entropy, bn: str = "batch") -> Callable:
    """The searchers' oracle: ``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` on a fixed batch.

    α (S, B, C) and β (S, D) go in as numpy arrays; the frozen supernet computes the expected-output mixture and
    autograd gives ∂loss/∂α, ∂loss/∂β as numpy (float64). The weights are not updated.

    Args:
        bn: "batch" (default) normalises with the batch's own statistics, per config, so the value fits any α, β —
            the running statistics of a multi-path supernet average all paths and misjudge any one architecture
            (see ``search.train.val_metrics``); "running" uses the running statistics. Both are deterministic for
            a fixed batch, and running statistics are left untouched either way.
    """
    if bn not in ("batch", "running"):
        raise ValueError(f"unknown bn mode {bn!r}; expected 'batch' or 'running'")
    x, y = val_batch
    dtype = next(supernet.parameters()).dtype
    x = x.to(dtype)
    sp = supernet.space
    shapes = ((sp.n_stages, sp.max_depth, len(sp.configs)), (sp.n_stages, len(sp.depths)))

    def objective(alpha: np.ndarray, beta: np.ndarray):
        if np.shape(alpha) != shapes[0] or np.shape(beta) != shapes[1]:
            raise ValueError(f"alpha, beta shapes {np.shape(alpha)}, {np.shape(beta)}; expected {shapes}")
        a = torch.tensor(np.asarray(alpha), dtype=dtype, requires_grad=True)
        b = torch.tensor(np.asarray(beta), dtype=dtype, requires_grad=True)
        was_training = supernet.training
        supernet.train(bn == "batch")
        try:
            with frozen_bn_stats(supernet):
                loss = loss_fn(supernet(x, a, b), y)
                ga, gb = torch.autograd.grad(loss, [a, b])
        finally:
            supernet.train(was_training)
        return float(loss.detach()), ga.detach().cpu().numpy().astype(np.float64), gb.detach().cpu().numpy().astype(np.float64)

    return objective
