"""Block-coordinate Frank-Wolfe (HardCoRe-NAS Algorithm 1) on the NAS-Bench-201 cell space.

On the cell space every resource is the multilinear extension of a table over the 15,625 cells
(profiler/nb201_model.py): LAT(α) = Σ_a L(a) Π_e α_{e,a_e}. It is not linear in α as a whole (HardCoRe's eq. (3) is
linear in α at fixed β), but it is linear in each edge's α_e with the other edges fixed:
LAT(α) = Σ_o α_{e,o} G_{e,o}, G_{e,o} = LAT with edge e set to o (``CellLatency.grad``). So the blocks of the block-
coordinate step are the 6 edges: each step picks an edge at random (eq. (8) with one block per edge) and solves the
linear minimisation oracle over that edge's simplex cut by the bounds G_e · x ≤ T_k (eq. (10) for one group, a
5-variable LP solved to a vertex: ``edge_lmo``), then takes the Frank-Wolfe step (eq. (9)) on that edge. The edge's feasible set
is convex and holds both the current α_e and the vertex, so every iterate stays feasible.

Start: the feasible cell of least latency (by enumeration), moved towards uniform α as far as every bound allows.
End: the final discrete step of ``cell.polish_cell`` (exact minimisation of the linearised objective over the
feasible cells, local search).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np

from profiler.nb201 import CellArch

from .cell import feasible_mask, polish_cell
from .decode import to_arch, uniform
from .problem import InfeasibleTarget, Problem, SearchResult, finish, trace_row
from .projection import _group_lp


def edge_lmo(g: np.ndarray, rows: np.ndarray, rhs: np.ndarray):
    """Eq. (10) for one edge: argmin ⟨g, x⟩ over the simplex with rows · x ≤ rhs, at a vertex; None if empty.

    With one bound the vertices are the feasible one-hots and, for each feasible op i and infeasible op j, the mix of
    the two on the bound: enumerated (the LP of ``projection._group_lp`` otherwise)."""
    if len(rows) != 1:
        x = _group_lp(g[None, :], rows, rhs)
        return None if x is None else x[0]
    c, b = rows[0], rhs[0] + 1e-12 * max(1.0, abs(rhs[0]))
    ok = np.flatnonzero(c <= b)
    if not len(ok):
        return None
    cands = [np.eye(len(g))[i] for i in ok]
    for i in ok:
        for j in np.flatnonzero(c > b):
            w = (c[j] - rhs[0]) / (c[j] - c[i])  # weight on i putting the mix exactly on the bound
            x = np.zeros(len(g))
            x[i], x[j] = w, 1.0 - w
            cands.append(x)
    return min(cands, key=lambda x: float(g @ x))


def default_gamma(t: int) -> float:
    """γ_t = 4 / (t + 4), as ``bcsfw.default_gamma``."""
    return 4.0 / (t + 4.0)


def feasible_start(problem: Problem, grid: int = 64):
    """(α, β, how): the least-latency feasible cell moved towards uniform α by the largest λ on a grid keeping every
    bound along the way."""
    ok = feasible_mask(problem)
    if not ok.any():  # Problem.check refuses this case before any searcher runs
        raise InfeasibleTarget("no architecture meets every bound", np.inf, problem.target)
    lat = problem.latency.table
    start = CellArch.from_index(int(np.argmin(np.where(ok, lat, np.inf))), problem.space)
    p, beta = start.one_hot()
    u, _ = uniform(problem.space)
    lam = np.linspace(0.0, 1.0, grid + 1)
    mix = (1 - lam)[:, None, None] * p + lam[:, None, None] * u
    fine = np.ones(len(lam), bool)
    for res, bound in problem.resources:
        fine &= res.predict(mix) <= bound + problem.slack(bound)
    k = int(np.argmin(fine)) - 1 if not fine.all() else len(lam) - 1  # the last λ of the feasible run from λ = 0
    return mix[k], beta, f"min-latency cell+central:{lam[k]:.3f}"


def cell_bcsfw(problem: Problem, steps: int = 300, seed: int = 0, gamma: Optional[Callable[[int], float]] = None,
               momentum: float = 0.0, polish: bool = True, polish_evals: int = 64,
               warm_start: Sequence[CellArch] = ()) -> SearchResult:
    """Algorithm 1 with one block per edge (module docstring); arguments as ``bcsfw.bcsfw``'s (its LP-projection
    settings do not apply here: the final step is ``polish_cell``, or the argmax if ``polish`` is False and it is
    feasible)."""
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    gamma = gamma or default_gamma
    rng = np.random.default_rng(seed)
    alpha, beta, start = feasible_start(problem)
    d = None
    trace, lp_s = [], 0.0
    for t in range(steps):
        loss, g_alpha, _ = problem.objective(alpha, beta)
        g = np.asarray(g_alpha, float)
        d = g if d is None else momentum * d + (1.0 - momentum) * g
        row = trace_row(problem, t, loss, alpha, beta)
        e = int(rng.integers(alpha.shape[0]))
        rows = np.array([res.grad(alpha)[0][e] for res, _ in problem.resources])  # G_e per bound: LAT on edge e
        t1 = time.perf_counter()
        xi = edge_lmo(d[e], rows, np.array([b for _, b in problem.resources]))
        lp_s += time.perf_counter() - t1
        step = gamma(t + 1) if xi is not None else 0.0
        if xi is not None:
            new = alpha.copy()
            new[e] = (1.0 - step) * alpha[e] + step * xi  # eq. (9) on one edge
            if problem.feasible(new, beta):  # exact in real arithmetic; guards a vertex a few ulps over a bound
                alpha = new
            else:
                step = 0.0
        row.update(block=f"edge{e}", gamma=step)
        trace.append(row)
    loss = problem.objective(alpha, beta)[0]
    trace.append(trace_row(problem, steps, loss, alpha, beta))
    info = {"start": start, "lp_s": lp_s, "steps": steps}
    arch = to_arch(problem.space, alpha, beta)
    if polish:
        arch, more = polish_cell(problem, alpha, beta, [arch], warm_start, max_evals=polish_evals)
        info.update(more)
    return finish(problem, "bcsfw", arch, alpha, beta, trace, info)
