"""Exact discrete optima under linear resource bounds, by mixed-integer programming (scipy.optimize.milp / HiGHS).

The discrete space of HardCoRe-NAS eq. (3) is written with binaries instead of the bilinear αᵀΘβ:

    y_{s,j} ∈ {0,1}   stage s has depth d_j,                 Σ_j y_{s,j} = 1
    z_{s,b,c} ∈ {0,1} slot b of stage s exists with config c, Σ_c z_{s,b,c} = Σ_{j: d_j > b} y_{s,j}

so that every resource of eq. (3) is *linear* in (z, y): R = fixed + Σ θ_{s,b,c} z_{s,b,c}. Any objective that is a
sum over the chosen blocks plus per-stage depth costs is linear too, and the MILP gives its exact optimum — the
reference the benchmarks measure the continuous searchers' gap against. With 5·4·12 + 5·3 = 255 binaries HiGHS
solves it in milliseconds. The same program with no objective decides whether several bounds can be met together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, milp

from profiler.model import LinearResource, depth_matrix
from profiler.space import Arch, Space


Bound = Tuple[LinearResource, float]


@dataclass(frozen=True)
class SeparableObjective:
    """f(α, β) = Σ_{s,b} w_{s,b}(β) g_{s,b}(α_{s,b}) + Σ_{s,j} B_{s,j} β_{s,j}, with per-slot
    g(a) = A·a + (μ/2)‖a − a₀‖² and w the slot weights of eq. (3).

    At one-hot (α, β) this is a sum of per-(stage, slot, config) costs over the chosen blocks plus per-stage depth
    costs, so ``exact_optimum`` finds its discrete minimum; for relaxed (α, β) and μ = 0 it is the expectation of
    that sum, like the latency. μ > 0 adds curvature (a quadratic the continuous searchers must cope with).
    Calling it returns ``(loss, ∂f/∂α, ∂f/∂β)``, the searchers' oracle signature.
    """

    space: Space
    A: np.ndarray  # (S, B, C) linear cost per config
    B: np.ndarray  # (S, D) cost per depth
    mu: float = 0.0  # curvature of the quadratic term
    a0: Optional[np.ndarray] = None  # (S, B, C) centre of the quadratic term

    def _parts(self):
        w_model = LinearResource("w", "", np.zeros_like(self.A), 0.0, self.space)
        a0 = np.zeros_like(self.A) if self.a0 is None else self.a0
        return w_model, a0

    def __call__(self, alpha: np.ndarray, beta: np.ndarray):
        w_model, a0 = self._parts()
        alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
        g = (alpha * self.A).sum(-1) + 0.5 * self.mu * ((alpha - a0) ** 2).sum(-1)  # g_{s,b}(α_{s,b})
        w = w_model.slot_weights(beta)
        loss = float((w * g).sum() + (beta * self.B).sum())
        grad_alpha = w[..., None] * (self.A + self.mu * (alpha - a0))
        grad_beta = np.where(w_model._always, 0.0, g) @ w_model._E.T + self.B
        return loss, grad_alpha, grad_beta

    def discrete_costs(self) -> np.ndarray:
        """g_{s,b}(e_c): the cost of choosing config c at slot b, shape (S, B, C)."""
        _, a0 = self._parts()
        return self.A + 0.5 * self.mu * (1.0 - 2.0 * a0 + (a0 ** 2).sum(-1, keepdims=True))

    def value_arch(self, arch: Arch) -> float:
        return self(*arch.one_hot())[0]


def _program(space: Space):
    """Equality rows of the (z, y) encoding and the index helpers."""
    S, Bmax, C, D = space.n_stages, space.max_depth, len(space.configs), len(space.depths)
    nz, ny = S * Bmax * C, S * D
    E = depth_matrix(space)
    rows = []
    for s in range(S):  # Σ_j y_{s,j} = 1
        r = np.zeros(nz + ny)
        r[nz + s * D: nz + (s + 1) * D] = 1.0
        rows.append((r, 1.0))
    for s in range(S):  # Σ_c z_{s,b,c} − Σ_j E[j,b] y_{s,j} = 0
        for b in range(Bmax):
            r = np.zeros(nz + ny)
            r[(s * Bmax + b) * C: (s * Bmax + b + 1) * C] = 1.0
            r[nz + s * D: nz + (s + 1) * D] = -E[:, b]
            rows.append((r, 0.0))
    A_eq = np.array([r for r, _ in rows])
    b_eq = np.array([v for _, v in rows])
    return nz, ny, A_eq, b_eq


def _decode(space: Space, x: np.ndarray, nz: int) -> Arch:
    S, Bmax, C, D = space.n_stages, space.max_depth, len(space.configs), len(space.depths)
    z = x[:nz].reshape(S, Bmax, C)
    y = x[nz:].reshape(S, D)
    stages = []
    for s in range(S):
        d = space.depths[int(np.argmax(y[s]))]
        stages.append(tuple(int(np.argmax(z[s, b])) for b in range(d)))
    return Arch(tuple(stages), space)


def solve_milp(space: Space, cost_alpha: np.ndarray, cost_beta: np.ndarray, bounds: Sequence[Bound] = (),
               time_limit_s: float = 30.0) -> Optional[Arch]:
    """The architecture minimising Σ chosen cost_alpha[s,b,c] + Σ cost_beta[s,j] with every resource ≤ its bound.

    Returns None when no architecture meets all bounds. The result is re-checked with the resources' own numpy
    prediction; HiGHS's feasibility tolerance (~1e-6 absolute) could otherwise admit an architecture a hair over a
    bound, so the bound is tightened by the excess and the program solved again.
    """
    nz, ny, A_eq, b_eq = _program(space)
    c = np.concatenate([np.asarray(cost_alpha, float).ravel(), np.asarray(cost_beta, float).ravel()])
    margins = [0.0] * len(bounds)
    for _ in range(4):
        cons = [LinearConstraint(A_eq, b_eq, b_eq)]
        for (res, bound), m in zip(bounds, margins):
            row = np.concatenate([res.theta.ravel(), np.zeros(ny)])
            cons.append(LinearConstraint(row[None, :], -np.inf, bound - res.fixed - m))
        out = milp(c, integrality=np.ones(nz + ny), bounds=Bounds(0, 1), constraints=cons,
                   options={"time_limit": time_limit_s})
        if out.x is None:
            if out.status == 1:  # time limit without any incumbent: say so rather than claim infeasibility
                raise TimeoutError(f"MILP found no solution within {time_limit_s} s ({out.message})")
            return None
        arch = _decode(space, np.round(out.x), nz)
        over = [res.predict_arch(arch) - bound for res, bound in bounds]
        bad = [i for i, (v, (_, bound)) in enumerate(zip(over, bounds)) if v > 1e-12 * max(1.0, abs(bound))]
        if not bad:
            return arch
        for i in bad:
            margins[i] += over[i] + 1e-9 * max(1.0, abs(bounds[i][1]))
    return None


def exact_optimum(objective: SeparableObjective, bounds: Sequence[Bound]) -> Optional[Tuple[Arch, float]]:
    """(architecture, value) of the exact discrete minimum of a separable objective under the bounds, or None."""
    arch = solve_milp(objective.space, objective.discrete_costs(), objective.B, bounds)
    return None if arch is None else (arch, objective.value_arch(arch))


def min_value(resource: LinearResource, bounds: Sequence[Bound] = ()) -> float:
    """The minimum of a resource over the architectures meeting ``bounds`` (the whole space if none); inf if none."""
    if not bounds:
        return resource.min_value()
    sp = resource.space
    arch = solve_milp(sp, resource.theta, np.zeros((sp.n_stages, len(sp.depths))), bounds)
    return np.inf if arch is None else resource.predict_arch(arch)


def closest_feasible(space: Space, alpha: np.ndarray, beta: np.ndarray, bounds: Sequence[Bound]) -> Optional[Arch]:
    """The feasible architecture maximising ⟨α, α'⟩ + ⟨β, β'⟩ over one-hot (α', β'): eq. (13)'s projection solved
    exactly over the discrete set (a fallback when rounding the LP vertex cannot meet several bounds at once).

    A slot the chosen depth drops keeps its best config in α' for free, so a block is charged its regret
    max_c α_{s,b,c} − α_{s,b,c}; charging −α instead would favour deep stages just for having more slots.
    """
    alpha = np.asarray(alpha, float)
    return solve_milp(space, alpha.max(-1, keepdims=True) - alpha, -np.asarray(beta, float), bounds)
