"""Block-Coordinate Stochastic Frank-Wolfe, HardCoRe-NAS Algorithm 1 (Nayman et al., ICML 2021, eqs. (7)-(11)).

ζ = (α, β) lives in the product of simplices cut by the bounds R_k(α, β) ≤ T_k (eq. (6); R_k of eq. (3) form). Each
step picks one block, α or β, at random (eq. (8)), and with the other block fixed solves the linear minimisation
oracle over that block's feasible set — eq. (10) for α, eq. (11) for β — exactly, to a vertex ξ (projection.lmo_*).
Because every R_k is linear in one block when the other is fixed, the block's feasible set is convex and contains
both ζ's block and ξ, so the Frank-Wolfe update (eq. (9))

    ζ_{t+1} = (1 − γ_t) ζ_t + γ_t ξ_t,        γ_t = 4 / (t + 4), t = 1, 2, ...   (default)

stays feasible at every step. The gradient may be a stochastic estimate (search/oracle.py); ``momentum`` averages it
over steps (stochastic FW with momentum, as the paper's implementation does): a constant m, or "decay" — the
averaging weight ρ_t = 4 / (t + 8)^{2/3} of stochastic conditional gradient (Mokhtari, Hassani, Karbasi, JMLR 2020,
Alg. 1), whose direction averages ever more calls, so the noise of d_t shrinks and the LP vertices (and the argmax
the stopping rule watches) settle. An oracle's ``momentum`` attribute is the default (search/oracle.py: "decay" for
its score estimator, 0 for the paired one, whose table of probes is an average already).

The start must be feasible and is found here, not assumed (phase 1): alternating block LPs minimise the largest
relative violation max_k (R_k − T_k)/|T_k| until it is ≤ 0 — with one bound that reaches the minimum-latency
architecture in one round; the exact MILP (exact.solve_milp) is the fallback for bound sets where alternating stalls.
At the end ζ is projected to a feasible discrete architecture (projection.project: LP vertices as in eq. (13) —
by default both the one closest to ζ and the one minimising the objective's linearisation at ζ, the better by the
objective, as measured in docs/search-core.md — then rounding of the few fractional groups of Theorem 3.1).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence, Union

import numpy as np

from profiler.space import Arch

from .decode import is_cell
from .polish import polish as polish_arch
from .problem import Problem, SearchResult, finish, objective_value, trace_row
from .projection import argmax_arch, lmo_alpha, lmo_beta, project
from .stopping import Stopping, default_patience


def default_gamma(t: int) -> float:
    """γ_t = 4 / (t + 4), the usual O(1/t) Frank-Wolfe decay; the loop calls it with t = 1, 2, ...

    Counting from t = 0 would make γ_0 = 1: the first step would jump to a vertex and throw the central start away
    (on 20 random separable objectives that doubled the mean gap to the exact optimum, 2.3 % -> 6.4 %).
    """
    return 4.0 / (t + 4.0)


def _violation(problem: Problem, alpha, beta) -> float:
    """max_k (R_k − T_k) / max(1, |T_k|): ≤ 0 iff feasible."""
    return max((float(r.predict(alpha, beta)) - b) / max(1.0, abs(b)) for r, b in problem.resources)


def _phase1_lp(problem: Problem, block: str, alpha, beta):
    """One block LP of phase 1: min τ s.t. (R_k(block) − T_k)/|T_k| ≤ τ, the block on its simplices."""
    from scipy.optimize import linprog

    rows, rhs = [], []
    for res, bound in problem.resources:
        scale = max(1.0, abs(bound))
        if block == "alpha":
            coef, const = res.grad(alpha, beta)[0].ravel(), res.fixed
        else:
            cost, const = res.beta_costs(alpha)
            coef = cost.ravel()
        rows.append(np.append(coef / scale, -1.0))
        rhs.append((bound - const) / scale)
    x0 = alpha if block == "alpha" else beta
    G, n = int(np.prod(x0.shape[:-1])), x0.shape[-1]
    A_eq = np.hstack([np.kron(np.eye(G), np.ones((1, n))), np.zeros((G, 1))])
    c = np.zeros(G * n + 1)
    c[-1] = 1.0
    out = linprog(c, A_ub=np.array(rows), b_ub=np.array(rhs), A_eq=A_eq, b_eq=np.ones(G),
                  bounds=[(0, None)] * (G * n) + [(None, None)], method="highs-ds")
    x = np.clip(out.x[:-1].reshape(x0.shape), 0.0, None)
    return x / x.sum(-1, keepdims=True)


def feasible_start(problem: Problem, rounds: int = 10, grid: int = 64):
    """A feasible (α, β), as central as the bounds allow; returns (α, β, how).

    Phase 1 (see the module docstring) gives a feasible p, often a vertex. A vertex is a poor start for the bilinear
    LAT: a β at depth 2 gives the α slots 3-4 zero weight, hence zero gradient, and the β-LP then never sees what
    deeper stages could do. So the start is moved from p towards the uniform ζ̄ as far as every bound allows:
    the largest λ on a grid with (1 − λ) p + λ ζ̄ feasible (R is quadratic in λ along that segment, so a grid of
    vectorised evaluations is simpler than solving each quadratic).
    """
    sp = problem.space
    u_a = np.full((sp.n_stages, sp.max_depth, len(sp.configs)), 1.0 / len(sp.configs))
    u_b = np.full((sp.n_stages, len(sp.depths)), 1.0 / len(sp.depths))
    alpha, beta, how = u_a, u_b, None
    for r in range(rounds):
        if problem.feasible(alpha, beta):
            how = f"phase1:{r}"
            break
        new_a = _phase1_lp(problem, "alpha", alpha, beta)
        new_b = _phase1_lp(problem, "beta", new_a, beta)
        stalled = _violation(problem, new_a, new_b) >= _violation(problem, alpha, beta) - 1e-12
        alpha, beta = new_a, new_b
        if stalled:  # alternating reached a block-coordinate minimum of the violation
            break
    if how is None and problem.feasible(alpha, beta):
        how = f"phase1:{rounds}"
    if how is None:
        from .exact import solve_milp

        arch = solve_milp(sp, np.zeros_like(alpha), np.zeros_like(beta), problem.resources)
        if arch is None:  # Problem.check refuses this case before any searcher runs
            from .problem import InfeasibleTarget

            raise InfeasibleTarget("no architecture meets every bound", np.inf, problem.target)
        alpha, beta = arch.one_hot()
        how = "milp"
    lam = np.linspace(0.0, 1.0, grid + 1)
    mix_a = (1 - lam)[:, None, None, None] * alpha + lam[:, None, None, None] * u_a
    mix_b = (1 - lam)[:, None, None] * beta + lam[:, None, None] * u_b
    ok = np.ones(len(lam), bool)
    for res, bound in problem.resources:
        ok &= res.predict(mix_a, mix_b) <= bound + problem.slack(bound)
    k = int(np.argmin(ok)) - 1 if not ok.all() else len(lam) - 1  # the last λ of the feasible run from λ = 0
    return mix_a[k], mix_b[k], f"{how}+central:{lam[k]:.3f}"


def _max_step(problem: Problem, alpha, beta, new_a, new_b) -> float:
    """The largest γ ≤ 1 keeping every bound along the segment (R is linear on it, as one block moves).

    In exact arithmetic this is 1; it only guards against a vertex a few ulps over a bound."""
    g = 1.0
    for res, bound in problem.resources:
        r0, r1 = float(res.predict(alpha, beta)), float(res.predict(new_a, new_b))
        if r1 > bound and r1 > r0:
            g = min(g, max(0.0, (bound - r0) / (r1 - r0)))
    return g


def bcsfw(problem: Problem, steps: int = 300, seed: int = 0, gamma: Optional[Callable[[int], float]] = None,
          momentum: Union[float, str, None] = None, p_alpha: float = 0.5, max_candidates: int = 4096,
          vertex_by: str = "both", polish: bool = True, polish_evals: int = 64,
          warm_start: Sequence[Arch] = (), patience: Optional[int] = None, gap_tol: float = 0.0) -> SearchResult:
    """HardCoRe-NAS Algorithm 1 on ``problem``; returns a feasible discrete architecture.

    Args:
        steps: Frank-Wolfe iterations (one block LP each).
        seed: seeds the block choice; the result is a deterministic function of (problem, seed) for a
            deterministic objective.
        gamma: step size schedule t -> γ_t, called with t = 1..steps; default 4 / (t + 4).
        momentum: m in [0, 1): the LP sees d_t = m d_{t-1} + (1 − m) ∇f(ζ_t); 0 uses the gradient as is; "decay":
            m_t = 1 − ρ_t (module docstring); default the objective's ``momentum`` attribute, else 0.
        p_alpha: probability of updating the α block at a step (eq. (8)); β otherwise.
        max_candidates: rounding enumerates at most this many completions of the fractional groups.
        vertex_by: the projection's LP objective: "closeness" (eq. (13)), "objective" (projection.lp_vertex) or
            "both" (candidates from both, the best by the objective; default).
        polish: end with ``polish.polish`` (exact solve of the linearisation at ζ, local search); False returns the
            projection as it is.
        polish_evals: cap on the local search's objective evaluations.
        warm_start: feasible architectures of a tighter target (a sweep), candidates of the polish.
        patience, gap_tol: stop once the argmax of (α, β) is unchanged for ``patience`` steps or the mean FW gap of
            those steps is ≤ gap_tol·|f| (search/stopping.py); default: the objective's ``patience`` (0: no early
            stop). ``info`` reports ``steps_used`` and ``stopped``, each trace row its ``fw_gap``.
    """
    momentum = getattr(problem.objective, "momentum", 0.0) if momentum is None else momentum
    if is_cell(problem.space):  # one block per edge of the multilinear cell tables: search/cell_fw.py
        from .cell_fw import cell_bcsfw

        return cell_bcsfw(problem, steps, seed, gamma, 0.0 if momentum == "decay" else momentum, polish,
                          polish_evals, warm_start)
    if momentum != "decay" and not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
        raise ValueError(f"momentum must be in [0, 1) or 'decay', got {momentum!r}")
    if not 0.0 <= p_alpha <= 1.0:
        raise ValueError(f"p_alpha must be in [0, 1], got {p_alpha!r}")
    gamma = gamma or default_gamma
    rng = np.random.default_rng(seed)
    alpha, beta, start = feasible_start(problem)  # α: block configs, β: depths, eq. (3)
    bounds = problem.resources
    d_alpha = d_beta = None
    trace, lp_s, step_s = [], 0.0, 0.0
    stop = Stopping(default_patience(problem.objective, patience), gap_tol=gap_tol)
    for t in range(steps):
        t0 = time.perf_counter()
        loss, g_alpha, g_beta = problem.objective(alpha, beta)
        if d_alpha is None:
            d_alpha, d_beta = np.asarray(g_alpha, float), np.asarray(g_beta, float)
        else:
            m = 1.0 - 4.0 / (t + 8.0) ** (2.0 / 3.0) if momentum == "decay" else momentum
            d_alpha = m * d_alpha + (1.0 - m) * np.asarray(g_alpha, float)
            d_beta = m * d_beta + (1.0 - m) * np.asarray(g_beta, float)
        row = trace_row(problem, t, loss, alpha, beta)  # f(ζ_t) and every R_k(ζ_t)
        block = "alpha" if rng.random() < p_alpha else "beta"
        t1 = time.perf_counter()
        xi = lmo_alpha(d_alpha, beta, bounds) if block == "alpha" else lmo_beta(d_beta, alpha, bounds)
        t_lp = time.perf_counter() - t1
        g = gamma(t + 1)
        gap = None
        if xi is None:  # only if ζ_t itself drifted over a bound, which _max_step prevents; stay put
            g = 0.0
        else:
            gap = float(np.sum(d_alpha * (alpha - xi))) if block == "alpha" else float(np.sum(d_beta * (beta - xi)))
            new_a, new_b = (xi, beta) if block == "alpha" else (alpha, xi)
            g = min(g, _max_step(problem, alpha, beta, new_a, new_b))
            if block == "alpha":
                alpha = (1.0 - g) * alpha + g * xi  # eq. (9)
            else:
                beta = (1.0 - g) * beta + g * xi
        dt = time.perf_counter() - t0
        lp_s, step_s = lp_s + t_lp, step_s + dt
        row.update(block=block, gamma=g, lp_s=t_lp, step_s=dt, fw_gap=gap)
        trace.append(row)
        if stop.update(str(argmax_arch(problem.space, alpha, beta)), gap, loss):
            break
    loss = objective_value(problem.objective, alpha, beta)
    trace.append(trace_row(problem, stop.steps, loss, alpha, beta))
    arch, info = project(problem.space, alpha, beta, bounds, max_candidates=max_candidates,
                         objective=problem.objective, vertex_by=vertex_by)
    info.update(start=start, lp_s=lp_s, step_s=step_s, steps=steps, **stop.info())
    if polish:
        arch, more = polish_arch(problem, alpha, beta, [arch], warm_start, max_evals=polish_evals)
        info.update(more)
    return finish(problem, "bcsfw", arch, alpha, beta, trace, info)
