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

from profiler.errors import ExitStatus, LutnasError
from profiler.model import LinearResource, depth_matrix
from profiler.space import Arch, Space

from .decode import to_arch

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

    def separable_costs(self) -> Tuple[np.ndarray, np.ndarray]:
        """(per-(stage, slot, config) cost, per-(stage, depth) cost) whose sum over a discrete arch is its value:
        the declaration ``--algo exact`` and ``exact_optimum`` read."""
        return self.discrete_costs(), np.asarray(self.B, float)


@dataclass(frozen=True)
class LinearObjective:
    """f(α, β) = sign · R(α, β) / scale for an additive resource R (FLOPs, params): linear in the one-hot arch.

    ``LinearObjective(flops, sign=-1, scale=flops.max_value())`` is the capacity proxy "most FLOPs within the
    budget" the CLI uses without a supernet; ``separable_costs`` declares it to ``--algo exact``.
    """

    resource: LinearResource
    sign: float = 1.0
    scale: float = 1.0

    def __call__(self, alpha: np.ndarray, beta: np.ndarray):
        k = self.sign / self.scale
        ga, gb = self.resource.grad(alpha, beta)
        return k * float(self.resource.predict(alpha, beta)), k * ga, k * gb

    def separable_costs(self) -> Tuple[np.ndarray, np.ndarray]:
        k = self.sign / self.scale
        sp = self.resource.space
        return k * self.resource.theta, np.zeros((sp.n_stages, len(sp.depths)))

    def value_arch(self, arch: Arch) -> float:
        return self.sign / self.scale * self.resource.predict_arch(arch)


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
    return to_arch(space, x[:nz].reshape(S, Bmax, C), x[nz:].reshape(S, D))


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
    arch = solve_milp(objective.space, *objective.separable_costs(), bounds)
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


# --- Pareto-front composition (one bound) ------------------------------------------------------------------------------
def _pareto(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Indices of the non-dominated points of (r, v), both minimised, in increasing r (one per tie)."""
    order = np.lexsort((v, r))
    vs = v[order]
    best_before = np.minimum.accumulate(np.concatenate([[np.inf], vs[:-1]]))
    return order[vs < best_before]


MAX_PAIRS = 300_000  # a merge of larger fronts gives up (memory); the caller falls back to the MILP


class FrontTooLarge(Exception):
    """Two fronts to merge hold more than ``MAX_PAIRS`` pairs: resource and value are too correlated to prune."""


def _merge(r1, v1, r2, v2, cap: float):
    """Minkowski sum of two fronts, points over ``cap`` dropped, then filtered; returns (r, v, i1, i2).

    Raises:
        FrontTooLarge: more than ``MAX_PAIRS`` pairs.
    """
    if len(r1) * len(r2) > MAX_PAIRS:
        raise FrontTooLarge(f"{len(r1)} x {len(r2)} options")
    r = (r1[:, None] + r2[None, :]).ravel()
    v = (v1[:, None] + v2[None, :]).ravel()
    keep = np.flatnonzero(r <= cap)
    k = keep[_pareto(r[keep], v[keep])]
    return r[k], v[k], k // len(r2), k % len(r2)


def _stage_front(theta_s, cost_s, depth_cost_s, depths):
    """The non-dominated (resource, value) options of one stage over its depths and per-slot configs.

    Returns (r, v, choices) with choices[i] the config tuple of option i (its length is the depth)."""
    r, v, ch = np.zeros(1), np.zeros(1), [()]
    by_depth = {}
    for b in range(max(depths)):
        k = _pareto(theta_s[b], cost_s[b])  # a slot's dominated configs never appear in a non-dominated option
        r, v, i1, i2 = _merge(r, v, theta_s[b][k], cost_s[b][k], np.inf)
        ch = [ch[i] + (int(k[j]),) for i, j in zip(i1, i2)]
        if b + 1 in depths:
            by_depth[b + 1] = (r, v, ch)
    rs, vs, chs = [], [], []
    for j, d in enumerate(depths):
        r_d, v_d, ch_d = by_depth[d]
        rs.append(r_d)
        vs.append(v_d + depth_cost_s[j])
        chs += ch_d
    r, v = np.concatenate(rs), np.concatenate(vs)
    k = _pareto(r, v)
    return r[k], v[k], [chs[i] for i in k]


def pareto_solve(space: Space, cost_alpha: np.ndarray, cost_beta: np.ndarray, resource: LinearResource,
                 bound: float) -> Optional[Arch]:
    """The architecture minimising Σ chosen cost_alpha[s,b,c] + Σ cost_beta[s,j] with ``resource`` ≤ ``bound``.

    A multiple-choice knapsack over stages, solved exactly by Pareto-front composition: per stage the non-dominated
    (resource, value) options over depths and per-slot configs, built slot by slot; then the stage fronts merged one
    by one, dropping every partial option that cannot meet the bound even with the cheapest rest. An optimum's
    restriction to any set of stages is non-dominated among that set's options (else swapping it would improve or
    tie the optimum), so no optimum is pruned. Returns None when no architecture meets the bound.

    Raises:
        FrontTooLarge: the fronts grew past ``MAX_PAIRS`` (value and resource nearly proportional, as FLOPs and a
            FLOPs-like latency: almost every option is non-dominated); ``solve_separable`` then uses the MILP.
    """
    cost_alpha, cost_beta = np.asarray(cost_alpha, float), np.asarray(cost_beta, float)
    depths = list(space.depths)
    fronts = [_stage_front(resource.theta[s], cost_alpha[s], cost_beta[s], depths) for s in range(space.n_stages)]
    rest = np.concatenate([np.cumsum([f[0].min() for f in fronts][::-1])[::-1][1:], [0.0]])
    cap = bound - resource.fixed + RTOL_PARETO * max(1.0, abs(bound))
    r, v, back = np.zeros(1), np.zeros(1), []
    for s, (fr, fv, _) in enumerate(fronts):
        r, v, i1, i2 = _merge(r, v, fr, fv, cap - rest[s])
        if not len(r):
            return None
        back.append((i1, i2))
    i = int(np.argmin(v))
    stages = []
    for s in range(space.n_stages - 1, -1, -1):
        i1, i2 = back[s]
        stages.append(fronts[s][2][int(i2[i])])
        i = int(i1[i])
    return Arch(tuple(stages[::-1]), space)


RTOL_PARETO = 1e-12  # the bound's relative slack, as solve_milp's re-check


def solve_separable(space: Space, cost_alpha: np.ndarray, cost_beta: np.ndarray,
                    bounds: Sequence[Bound]) -> Tuple[Optional[Arch], str]:
    """Exact minimum of a separable cost under the bounds: Pareto composition for one bound, the MILP for several
    (a front over several resources is no longer a curve and can grow with the product of their ranges), and for
    one bound whose front grows too large to merge (``FrontTooLarge``).

    Returns (arch or None if nothing meets the bounds, "pareto" | "milp")."""
    if len(bounds) == 1:
        try:
            return pareto_solve(space, cost_alpha, cost_beta, *bounds[0]), "pareto"
        except FrontTooLarge:
            return solve_milp(space, cost_alpha, cost_beta, bounds), "milp:front-too-large"
    return solve_milp(space, cost_alpha, cost_beta, bounds), "milp"


def separable_costs(objective) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """The (cost_alpha (S, B, C), cost_beta (S, D)) an objective declares through ``separable_costs()``, or None."""
    fn = getattr(objective, "separable_costs", None)
    return None if fn is None else tuple(np.asarray(x, float) for x in fn())


class NotSeparable(LutnasError):
    """``--algo exact`` was given an objective that does not declare per-block costs (a supernet, say)."""

    status = ExitStatus.BAD_INPUT
