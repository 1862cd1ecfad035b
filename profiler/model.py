"""The additive resource model of HardCoRe-NAS, eq. (3): LAT(α, β) = fixed + αᵀΘβ.

Nayman et al., "HardCoRe-NAS: Hard Constrained diffeRentiable Neural Architecture Search", ICML 2021, eq. (3)::

    LAT(α, β) = fixed + Σ_s [ Σ_c α_{s,1,c} t_{s,1,c} + Σ_{b'=2..4} β_{s,b'} Σ_{b=2..b'} Σ_c α_{s,b,c} t_{s,b,c} ]

Reordering the sums, slot b of stage s counts with weight w_{s,b}(β) = Σ_{d > b} β_{s,d} (the probability that the
stage is deeper than b), and the slots every depth has (b < min depth) count with weight 1 — eq. (3) writes them
outside the β sum, so their weight does not depend on β and neither does the gradient. Hence::

    LAT(α, β) = fixed + Σ_{s,b} w_{s,b}(β) Σ_c α_{s,b,c} θ_{s,b,c}

which is linear in α for fixed β and linear in β for fixed α (bilinear), the property the block-coordinate
Frank-Wolfe of eqs. (10)-(11) relies on. At one-hot (α, β) it is the sum of the chosen blocks' costs, and for relaxed
(α, β) it is the expectation of that sum when each stage draws its depth from β_s and each slot its config from
α_{s,b} independently. The same class serves any additive resource: measured latency, params, FLOPs, energy.

The params and FLOPs of every block (``block_cost``) are computed analytically and wrapped in the same class
(``params_model``, ``flops_model``). Params count every trainable tensor of the block as profiler/nets.py builds it
(conv and linear weights and biases, BatchNorm's scale and shift). FLOPs are multiply-accumulates of convolutions and
linear layers; BatchNorm folds into the preceding convolution at inference and activations, pooling and the residual
add are not counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Tuple

import numpy as np

from .space import HARDCORE, Arch, BlockSpec, Space


class MissingBlock(KeyError):
    """A block of the space has no entry in the table given to ``LinearResource.from_table``."""

    def __init__(self, key: str, name: str):
        self.key = key
        super().__init__(f"the {name} table has no entry for block {key!r}")

    def __str__(self) -> str:  # KeyError would print the message quoted as a repr
        return self.args[0]


def depth_matrix(space: Space) -> np.ndarray:
    """E[j, b] = 1 when depth option j (``space.depths[j]``) has slot b (0-based), shape (len(depths), max_depth)."""
    return (np.asarray(space.depths)[:, None] > np.arange(space.max_depth)[None, :]).astype(float)


@dataclass(frozen=True, eq=False)
class LinearResource:
    """An additive resource of an architecture, eq. (3), with its per-block table Θ.

    Attributes:
        name: what it measures ("latency", "pi4:latency", "params", "flops").
        unit: "ms", "" (a count) ...
        theta: Θ, shape (stages, max_depth, configs): cost of config c at slot b of stage s.
        fixed: cost of the parts every architecture has (stem, ds block, head).
        space: the search space Θ was built for.
    """

    name: str
    unit: str
    theta: np.ndarray  # Θ, eq. (3): t_{s,b,c}
    fixed: float
    space: Space = field(default=HARDCORE)

    def __post_init__(self) -> None:
        sp = self.space
        want = (sp.n_stages, sp.max_depth, len(sp.configs))
        theta = np.asarray(self.theta, dtype=float)
        if theta.shape != want:
            raise ValueError(f"theta of {self.name!r} has shape {theta.shape}; space {sp.name!r} needs {want}")
        if not np.all(np.isfinite(theta)) or not np.isfinite(self.fixed):
            raise ValueError(f"theta of {self.name!r} has non-finite entries")
        theta.setflags(write=False)
        object.__setattr__(self, "theta", theta)
        object.__setattr__(self, "fixed", float(self.fixed))
        # E[j, b]: depth j has slot b; slots below the minimum depth always exist and weigh 1 regardless of β
        object.__setattr__(self, "_E", depth_matrix(sp))
        object.__setattr__(self, "_always", np.arange(sp.max_depth) < min(sp.depths))

    # --- construction --------------------------------------------------------------------------------------------
    @classmethod
    def from_table(cls, space: Space, table: Mapping[str, float], name: str = "latency",
                   unit: str = "ms") -> "LinearResource":
        """Θ from a table block string -> value covering ``space.unique_blocks()``; fixed = stem + ds + head.

        Raises:
            MissingBlock (a KeyError) naming the first block string the table lacks.
        """
        def get(b) -> float:
            try:
                return float(table[str(b)])
            except KeyError:
                raise MissingBlock(str(b), name) from None

        theta = np.empty((space.n_stages, space.max_depth, len(space.configs)))
        for s in range(space.n_stages):
            for c, cfg in enumerate(space.configs):
                theta[s, 0, c] = get(space.block(s, 0, cfg))
                if space.max_depth > 1:
                    theta[s, 1:, c] = get(space.block(s, 1, cfg))  # slots 2..max share one block shape
        fixed = sum(get(b) for b in space.fixed_blocks())
        return cls(name=name, unit=unit, theta=theta, fixed=fixed, space=space)

    # --- eq. (3) ---------------------------------------------------------------------------------------------------
    def slot_weights(self, beta: np.ndarray) -> np.ndarray:
        """w_{s,b}(β), shape (..., stages, max_depth): 1 for the slots every depth has, Σ_{d>b} β_{s,d} otherwise."""
        beta = np.asarray(beta, dtype=float)
        w = beta @ self._E
        return np.where(self._always, 1.0, w)

    def _check(self, alpha, beta) -> Tuple[np.ndarray, np.ndarray]:
        alpha, beta = np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float)
        b_shape = (self.theta.shape[0], self._E.shape[0])
        if alpha.shape[-3:] != self.theta.shape or beta.shape[-2:] != b_shape:
            raise ValueError(f"alpha {alpha.shape}, beta {beta.shape}: expected (..., *{self.theta.shape}) and "
                             f"(..., *{b_shape})")
        if alpha.shape[:-3] != beta.shape[:-2]:
            raise ValueError(f"batch shapes of alpha {alpha.shape[:-3]} and beta {beta.shape[:-2]} differ")
        return alpha, beta

    def slot_costs(self, alpha: np.ndarray) -> np.ndarray:
        """u_{s,b} = Σ_c α_{s,b,c} θ_{s,b,c}, shape (..., stages, max_depth)."""
        return np.einsum("...sbc,sbc->...sb", np.asarray(alpha, dtype=float), self.theta)

    def predict(self, alpha: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """LAT(α, β), eq. (3), for α (..., S, B, C) and β (..., S, D); returns shape (...)."""
        alpha, beta = self._check(alpha, beta)
        return self.fixed + (self.slot_costs(alpha) * self.slot_weights(beta)).sum((-1, -2))

    def predict_torch(self, alpha, beta):
        """LAT(α, β) in torch, differentiable in α and β (same batching as ``predict``)."""
        import torch

        theta = torch.tensor(self.theta, dtype=alpha.dtype, device=alpha.device)  # a copy: Θ is read-only
        E = torch.as_tensor(self._E, dtype=beta.dtype, device=beta.device)
        always = torch.as_tensor(self._always, device=beta.device)
        u = (alpha * theta).sum(-1)
        w = torch.where(always, torch.ones((), dtype=beta.dtype, device=beta.device), beta @ E)
        return self.fixed + (u * w).sum((-1, -2))

    def grad(self, alpha: np.ndarray, beta: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(∂LAT/∂α, ∂LAT/∂β), analytic; batched like ``predict``.

        ∂/∂α_{s,b,c} = w_{s,b}(β) θ_{s,b,c};  ∂/∂β_{s,j} = Σ_{b ≥ min depth, b < d_j} u_{s,b}.
        """
        alpha, beta = self._check(alpha, beta)
        g_alpha = self.slot_weights(beta)[..., None] * self.theta
        u = np.where(self._always, 0.0, self.slot_costs(alpha))
        g_beta = u @ self._E.T
        return g_alpha, g_beta

    def beta_costs(self, alpha: np.ndarray) -> Tuple[np.ndarray, float]:
        """For fixed α: LAT = const + Σ_{s,j} β_{s,j} cost_{s,j}; returns (cost (S, D), const). Eq. (11)'s row."""
        u = self.slot_costs(alpha)
        const = self.fixed + float(np.where(self._always, u, 0.0).sum())
        return np.where(self._always, 0.0, u) @ self._E.T, const

    def predict_arch(self, arch: Arch) -> float:
        """The resource of a discrete architecture: the sum of its blocks' costs."""
        alpha, beta = arch.one_hot()
        return float(self.predict(alpha, beta))

    # --- extremes over the discrete space ----------------------------------------------------------------------------
    def _extreme_arch(self, pick) -> Arch:
        sp = self.space
        best = pick(self.theta, axis=-1)  # per slot, the extreme config (slots are independent given the depth)
        per_depth = np.cumsum(self.theta.min(-1) if pick is np.argmin else self.theta.max(-1), axis=-1)
        per_depth = per_depth[:, np.asarray(sp.depths) - 1]  # (S, D): each stage's cost at each depth
        depth = pick(per_depth, axis=-1)
        return Arch(tuple(tuple(int(c) for c in best[s, :sp.depths[depth[s]]]) for s in range(sp.n_stages)), sp)

    def argmin_arch(self) -> Arch:
        """An architecture with the smallest value (per slot the cheapest config, per stage the cheapest depth)."""
        return self._extreme_arch(np.argmin)

    def argmax_arch(self) -> Arch:
        """An architecture with the largest value."""
        return self._extreme_arch(np.argmax)

    def min_value(self) -> float:
        """The smallest value any architecture of the space has."""
        return self.predict_arch(self.argmin_arch())

    def max_value(self) -> float:
        """The largest value any architecture of the space has."""
        return self.predict_arch(self.argmax_arch())

    def __repr__(self) -> str:
        return (f"LinearResource({self.name!r}, unit={self.unit!r}, fixed={self.fixed:g}, "
                f"range=[{self.min_value():g}, {self.max_value():g}])")


# --- params and FLOPs --------------------------------------------------------------------------------------------
def block_cost(b: BlockSpec) -> Tuple[int, int]:
    """(params, multiply-accumulates) of one block at batch 1."""
    hw_in, hw_out = b.res * b.res, b.out_res * b.out_res
    if b.kind == "conv":
        return b.i * b.o * b.k * b.k + 2 * b.o, b.i * b.o * b.k * b.k * hw_out
    if b.kind == "ds":
        params = b.i * b.k * b.k + 2 * b.i + b.i * b.o + 2 * b.o
        return params, b.i * b.k * b.k * hw_out + b.i * b.o * hw_out
    if b.kind == "ir":
        mid, rd = b.mid, b.se_ch
        params = b.i * mid + 2 * mid + mid * b.k * b.k + 2 * mid + mid * b.o + 2 * b.o
        macs = b.i * mid * hw_in + mid * b.k * b.k * hw_out + mid * b.o * hw_out
        if b.se:
            params += mid * rd + rd + rd * mid + mid
            macs += 2 * mid * rd
        return params, macs
    if b.kind == "head":
        params = b.i * b.o + 2 * b.o + b.o * b.f + b.f + b.f * b.c + b.c
        return params, b.i * b.o * hw_in + b.o * b.f + b.f * b.c
    raise ValueError(f"no cost formula for block kind {b.kind!r}")


def _model(space: Space, which: int, name: str, unit: str) -> LinearResource:
    table = {str(b): float(block_cost(b)[which]) for b in space.unique_blocks()}
    return LinearResource.from_table(space, table, name=name, unit=unit)


def params_model(space: Space) -> LinearResource:
    """Params of every architecture; for the NB201 cell space a table over its cells (profiler/nb201_cost.py)."""
    if space.name == "nb201":
        from .nb201_cost import params_model as cell_params

        return cell_params(space)
    return _model(space, 0, "params", "")


def flops_model(space: Space) -> LinearResource:
    """Multiply-accumulates of every architecture; for the NB201 cell space as ``params_model``."""
    if space.name == "nb201":
        from .nb201_cost import flops_model as cell_flops

        return cell_flops(space)
    return _model(space, 1, "flops", "MAC")
