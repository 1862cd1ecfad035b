"""Block LPs over the feasible set, and the projections of a relaxed (α, β) to a discrete architecture.

HardCoRe-NAS (Nayman et al., ICML 2021). LAT(α, β) of eq. (3) is bilinear, so with β fixed every bound is one linear
row in α, and with α fixed one linear row in β. The linear minimisation oracles of Frank-Wolfe, eqs. (10) and (11),

    ξ_α = argmin_{α' ∈ Δ^{S×B}, R_k(α', β) ≤ T_k ∀k} ⟨g_α, α'⟩        ξ_β = argmin_{β' ∈ Δ^S, R_k(α, β') ≤ T_k ∀k} ⟨g_β, β'⟩

are small LPs (240 and 15 variables) solved to a vertex by HiGHS' dual simplex. The projection of eq. (13) is the same
pair of LPs with the objective −ζ: the feasible vertex closest to ζ in the ⟨·,·⟩ sense. Theorem 3.1: a vertex of
"one simplex per group + K inequality rows" has at most K groups with more than one non-zero, so with one bound at
most one α slot and one β stage stay fractional. ``project`` then rounds those few groups by enumerating their
supports (for one bound, the cheapest option in each support is always feasible, since eq. (3) is linear in each
group with a non-negative weight), keeps the feasible candidate closest to ζ, and falls back to the exact MILP
projection (``exact.closest_feasible``) only if no candidate meets all bounds. The plain argmax of eq. (12) is
``argmax_arch``, kept for comparison: it ignores the bounds.
"""
from __future__ import annotations

import itertools
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.optimize import linprog

from profiler.model import LinearResource
from profiler.space import Arch, Space

from .decode import to_arch
from .problem import objective_value


Bound = Tuple[LinearResource, float]
# Dual simplex always ends at a basic solution (a vertex), which Theorem 3.1 and the FW step rely on; HiGHS' interior
# point would need crossover to get there.
LP_METHOD = "highs-ds"
FRACTIONAL = 1e-9  # a group whose largest entry is below 1 - this is fractional


class ProjectionError(RuntimeError):
    """A block LP was infeasible: the point it was asked to move from violates a bound."""


def _group_lp(cost: np.ndarray, rows: np.ndarray, rhs: np.ndarray) -> Optional[np.ndarray]:
    """argmin ⟨cost, x⟩ over x (G, n) with each row x_g on the simplex and rows·vec(x) ≤ rhs; None if infeasible."""
    G, n = cost.shape
    A_eq = np.kron(np.eye(G), np.ones((1, n)))
    out = linprog(cost.ravel(), A_ub=rows if len(rows) else None, b_ub=rhs if len(rows) else None, A_eq=A_eq,
                  b_eq=np.ones(G), bounds=(0, None), method=LP_METHOD)
    if out.status != 0:
        return None
    # HiGHS returns vertices exact up to ~1e-15; clip and renormalise so every group is exactly on its simplex
    x = np.clip(out.x.reshape(G, n), 0.0, None)
    return x / x.sum(-1, keepdims=True)


def lmo_alpha(g_alpha: np.ndarray, beta: np.ndarray, bounds: Sequence[Bound]) -> Optional[np.ndarray]:
    """Eq. (10): the vertex minimising ⟨g_α, α'⟩ over per-slot simplices and the bounds at fixed β."""
    S, B, C = g_alpha.shape
    rows, rhs = [], []
    for res, bound in bounds:
        coef = res.grad(np.full((S, B, C), 1.0 / C), beta)[0]  # w_{s,b}(β) θ_{s,b,c}: independent of α
        rows.append(coef.ravel())
        rhs.append(bound - res.fixed)
    x = _group_lp(np.asarray(g_alpha, float).reshape(S * B, C), np.array(rows), np.array(rhs))
    return None if x is None else x.reshape(S, B, C)


def lmo_beta(g_beta: np.ndarray, alpha: np.ndarray, bounds: Sequence[Bound]) -> Optional[np.ndarray]:
    """Eq. (11): the vertex minimising ⟨g_β, β'⟩ over per-stage simplices and the bounds at fixed α."""
    rows, rhs = [], []
    for res, bound in bounds:
        cost, const = res.beta_costs(alpha)
        rows.append(cost.ravel())
        rhs.append(bound - const)
    return _group_lp(np.asarray(g_beta, float), np.array(rows), np.array(rhs))


def fractional(x: np.ndarray) -> np.ndarray:
    """Mask of the groups (last axis) that are not one-hot."""
    return x.max(-1) < 1.0 - FRACTIONAL


def argmax_arch(space: Space, alpha: np.ndarray, beta: np.ndarray) -> Arch:
    """Eq. (12): the plain argmax projection, blind to the bounds."""
    return to_arch(space, alpha, beta)


def lp_vertex(alpha: np.ndarray, beta: np.ndarray, bounds: Sequence[Bound],
              objective=None) -> Tuple[np.ndarray, np.ndarray]:
    """Eq. (13): the feasible vertex maximising ⟨ζ_α, α'⟩ (at β = ζ_β), then ⟨ζ_β, β'⟩ (at α = α').

    With ``objective`` the same two LPs minimise the objective's linearisation instead — ⟨∇_α f(ζ), α'⟩, then
    ⟨∇_β f(α', ζ_β), β'⟩ — i.e. a last pair of Frank-Wolfe vertices: where f is linear in each block this is the
    best vertex for f, while closeness to ζ can land on a vertex f likes less (an FW iterate is an average of many
    vertices). Both are vertices of the same polytope, so Theorem 3.1 holds either way.

    Raises:
        ProjectionError: (α, β) itself violates a bound, so the α-LP has no feasible point.
    """
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    cost_a = -alpha if objective is None else np.asarray(objective(alpha, beta)[1], float)
    a_v = lmo_alpha(cost_a, beta, bounds)
    if a_v is None:
        raise ProjectionError("the point to project violates a bound; eq. (13) needs a feasible ζ")
    cost_b = -beta if objective is None else np.asarray(objective(a_v, beta)[2], float)
    b_v = lmo_beta(cost_b, a_v, bounds)
    if b_v is None:  # cannot happen in exact arithmetic: β = ζ_β is feasible for this LP
        raise ProjectionError("the β-LP of eq. (13) is infeasible at the α vertex")
    return a_v, b_v


def _completions(x: np.ndarray, groups) -> list:
    """Every one-hot array equal to x's argmax outside ``groups`` and to one of x's support entries in each group."""
    base = np.eye(x.shape[-1])[x.argmax(-1)]
    out = []
    for choice in itertools.product(*[np.flatnonzero(x[g] > 0) for g in groups]):
        c = base.copy()
        for g, k in zip(groups, choice):
            c[g] = 0.0
            c[g + (int(k),)] = 1.0
        out.append(c)
    return out


def project(space: Space, alpha: np.ndarray, beta: np.ndarray, bounds: Sequence[Bound],
            max_candidates: int = 4096, objective=None, max_evals: int = 64,
            vertex_by: str = "closeness") -> Tuple[Arch, dict]:
    """A discrete architecture meeting every bound, close to (α, β): eq. (13), then rounding of the few fractional
    groups Theorem 3.1 leaves. Returns (arch, info) with the vertex' sparsity and which path produced the arch.

    Rounding: each depth in the support of the (≤ K) fractional β stages is tried; at each such one-hot β' the α-LP
    is solved again — so slots that β' makes count fully get configs chosen for that depth, not ones chosen while
    they weighed a fraction — and its (≤ K) fractional slots are completed by each config in their support. For one
    bound the cheapest completion is always feasible (eq. (3) is linear in each group with a non-negative weight).
    Among the feasible candidates the best by ``objective`` is kept (closest to ζ without one).

    Args:
        objective: the searcher's oracle; ranks the candidates if there are at most ``max_evals`` of them.
        vertex_by: "closeness" — eq. (13) as published; "objective" — the LP vertices minimising the objective's
            linearisation (``lp_vertex``); "both" — candidates from both (needs ``objective``).

    Raises:
        ProjectionError: no architecture meets the bounds at all.
    """
    from .exact import closest_feasible

    modes = {"closeness": [False], "objective": [True], "both": [False, True]}
    if vertex_by not in modes:
        raise ValueError(f"unknown vertex_by {vertex_by!r}; expected one of {', '.join(modes)}")
    if vertex_by != "closeness" and objective is None:
        raise ValueError(f"vertex_by={vertex_by!r} needs the objective")
    alpha, beta = np.asarray(alpha, float), np.asarray(beta, float)
    slack = [t + 1e-9 * max(1.0, abs(t)) for _, t in bounds]
    info: dict = {}
    cands = {}
    for use_obj in modes[vertex_by]:
        try:
            a_v, b_v = lp_vertex(alpha, beta, bounds, objective if use_obj else None)
        except ProjectionError as exc:
            info["lp"] = str(exc)
            continue
        frac_b = [(int(s),) for s in np.flatnonzero(fractional(b_v))]
        info.setdefault("fractional_alpha", int(fractional(a_v).sum()))
        info.setdefault("fractional_beta", len(frac_b))
        for b_c in _completions(b_v, frac_b):
            cost_a = np.asarray(objective(alpha, b_c)[1], float) if use_obj else -alpha
            a_w = lmo_alpha(cost_a, b_c, bounds)
            if a_w is None:  # this depth choice leaves no room for any config
                continue
            used = b_c @ (np.asarray(space.depths)[:, None] > np.arange(space.max_depth)[None, :])
            frac_a = [tuple(int(j) for j in i) for i in np.argwhere(fractional(a_w) & (used > 0))]
            if np.prod([np.count_nonzero(a_w[g]) for g in frac_a]) > max_candidates:
                continue
            for a_c in _completions(a_w, frac_a):
                if all(float(r.predict(a_c, b_c)) <= t for (r, _), t in zip(bounds, slack)):
                    arch = to_arch(space, a_c, b_c)
                    cands.setdefault(str(arch), (arch, a_c, b_c))
    if cands:
        by_objective = objective is not None and len(cands) <= max_evals
        if by_objective:
            score = {k: -objective_value(objective, a, b) for k, (_, a, b) in cands.items()}
        else:
            score = {k: float((alpha * a).sum() + (beta * b).sum()) for k, (_, a, b) in cands.items()}
        key = max(score, key=score.get)
        info.update(candidates=len(cands), ranked_by="objective" if by_objective else "closeness", path="lp-vertex")
        return cands[key][0], info
    arch = closest_feasible(space, alpha, beta, bounds)
    if arch is None:
        raise ProjectionError("no architecture of the space meets every bound")
    info["path"] = "milp"
    return arch, info
