"""The discrete step every relaxed searcher (bcsfw, connas, dca, hypernet) ends with: exact for its final
linearisation, then a local search on the true objective. Why this step and what it changed: docs/search-core.md.

1. **Linearise** the objective at the searcher's final relaxed point (α, β), in the form of HardCoRe-NAS eq. (3):
   a cost per (stage, slot, config) and a cost per (stage, depth), whose sum over a discrete architecture is the
   first-order model of f. One oracle call at (α, β_deep) — β one-hot at the deepest depth, so that every slot
   weighs 1 in eq. (3) — gives both: c_{s,b,c} = ∂f/∂α_{s,b,c} there, and e_{s,j} = ∂f/∂β_{s,j} less the model's
   own cost of the slots depth j adds, Σ_{b ∈ extra(j)} ⟨c_{s,b}, α_{s,b}⟩. For an objective that is multilinear in
   the groups (linear in each α_{s,b} and β_s, like the expectation of a per-block sum: the separable-bilinear
   objectives of the benchmarks) this model is exact at any (α, β); otherwise it is the tangent at α.
2. **Solve the model exactly** over the discrete architectures meeting every bound (``exact.solve_separable``:
   Pareto composition for one bound, the MILP for several). That vertex is feasible whenever any architecture is,
   whatever the searcher did before — the guarantee the relaxed searchers rely on at any steps/batch setting.
   The model is then taken again at the best architecture so far (one-hot) and solved again, while that improves f
   (a Frank-Wolfe whose linear minimisation oracle runs over the feasible discrete set).
3. **Keep the best** by the true objective among the candidates: the searcher's own architecture (if feasible),
   the warm starts (a tighter target's answers in a sweep, feasible for a looser bound: the sweep is monotone), and
   the exact vertices.
4. **Local search** from it over one-slot (another config) and one-depth moves (slots a deeper stage adds take the
   model's best config) that keep every bound, tried in order of the model's predicted gain, first improvement
   accepted; where none improves, over exchanges (two such moves that meet the bounds only together: at a binding
   target every single move that would help costs too much latency). Once the search has left the architecture the
   model was taken at, ``stall`` evaluations in a row without improvement (the objective's ``polish_stall``; default
   0: never) take the model again at the best architecture so far (``local.local_search``'s refresh): the tangent at
   the start ranks moves far from it poorly. It stops after ``patience`` evaluations in a row without improvement or
   ``max_evals`` in all. (With the supernet oracle, stall = 20 moved a loose target's answers from 0.318 / 0.301 /
   0.301 validation loss on seeds 0-2 to 0.270 / 0.279 / 0.290, at 500 evaluations instead of 400:
   docs/BENCHMARKS.md, issue 17.)
5. **At a local optimum** with evaluations left, the model is taken again there and solved exactly; if that vertex
   is better it is a new start for step 4. (With the supernet oracle at a loose target this moved seed 1's answer
   from 0.2899 to 0.2707 validation loss; the exchanges, at the tightest target, 0.3335 to 0.3296 and 0.3205 to
   0.3178 on seeds 0 and 2: docs/BENCHMARKS.md, issue 17.)

Every oracle call is counted (``info["polish_evals"]``): with a supernet each one is a forward pass.
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from profiler.model import depth_matrix
from profiler.space import Arch

from .decode import is_cell
from .exact import solve_separable
from .local import local_search
from .problem import Calls as _Calls, Problem


def linear_model(problem: Problem, alpha: np.ndarray, beta: np.ndarray, calls: _Calls) -> Tuple[np.ndarray, np.ndarray]:
    """(c (S, B, C), e (S, D)): the objective's first-order model at α as per-block and per-depth costs (step 1)."""
    sp = problem.space
    alpha = np.asarray(alpha, float)
    deep = np.zeros((sp.n_stages, len(sp.depths)))
    deep[:, int(np.argmax(sp.depths))] = 1.0
    c, gb = calls.grad(alpha, deep)
    always = np.arange(sp.max_depth) < min(sp.depths)  # slots every depth has: outside β in eq. (3)
    slot = np.where(always, 0.0, (c * alpha).sum(-1))
    return c, gb - slot @ depth_matrix(sp).T


def _singles(problem: Problem, arch: Arch, c: np.ndarray, e: np.ndarray):
    """(resource values of ``arch`` (K,), their limits (K,), moves): every one-slot and one-depth move of ``arch``,
    within the bounds or not, as (the model's predicted change, stage, slot or -1 for a depth move, the stage's new
    configs, Δ of each resource (K,))."""
    sp = problem.space
    depths = list(sp.depths)
    values = np.array([res.predict_arch(arch) for res, _ in problem.resources])
    limits = np.array([b + problem.slack(b) for _, b in problem.resources])
    thetas = [res.theta for res, _ in problem.resources]
    out = []
    for s, blocks in enumerate(arch.stages):
        for b, cur in enumerate(blocks):
            dr = np.array([t[s, b] - t[s, b, cur] for t in thetas])  # (K, C)
            for cfg in range(len(sp.configs)):
                if cfg != cur:
                    out.append((float(c[s, b, cfg] - c[s, b, cur]), s, b, blocks[:b] + (cfg,) + blocks[b + 1:],
                                dr[:, cfg]))
        j = depths.index(len(blocks))
        for j2, d2 in enumerate(depths):
            if d2 == len(blocks):
                continue
            if d2 < len(blocks):
                new = blocks[:d2]
            else:
                new = blocks + tuple(int(np.argmin(c[s, b])) for b in range(len(blocks), d2))
            gain = e[s, j2] - e[s, j] + sum(c[s, b, new[b]] for b in range(d2)) - \
                sum(c[s, b, blocks[b]] for b in range(len(blocks)))
            cand = Arch(arch.stages[:s] + (new,) + arch.stages[s + 1:], sp)
            out.append((float(gain), s, -1, new, np.array([res.predict_arch(cand) for res, _ in problem.resources])
                        - values))
    return values, limits, out


def _moves(problem: Problem, arch: Arch, c: np.ndarray, e: np.ndarray):
    """Every one-slot and one-depth neighbour of ``arch`` meeting the bounds, with the model's predicted change."""
    values, limits, singles = _singles(problem, arch, c, e)
    feasible = []
    for gain, s, b, new, dr in singles:
        if b >= 0 and not np.all(values + dr <= limits):  # a slot move's Δ is exact; depth moves: feasible_arch
            continue
        cand = Arch(arch.stages[:s] + (new,) + arch.stages[s + 1:], problem.space)
        if problem.feasible_arch(cand):
            feasible.append((gain, str(cand), cand))
    feasible.sort(key=lambda m: (m[0], m[1]))
    return feasible


def _exchanges(problem: Problem, arch: Arch, c: np.ndarray, e: np.ndarray, limit: int = 4000):
    """Pairs of one-slot / one-depth moves in different groups that meet the bounds together although at least one
    of them does not alone (an exchange: spend latency in one place, save it in another), best predicted gain first
    (the model is separable, so a pair's gain is the sum of its parts); at most ``limit`` of them."""
    values, limits, singles = _singles(problem, arch, c, e)
    if len(singles) < 2:
        return []
    gain = np.array([m[0] for m in singles])
    stage = np.array([m[1] for m in singles])
    slot = np.array([m[2] for m in singles])
    dr = np.array([m[4] for m in singles])  # (M, K)
    alone = np.all(values + dr <= limits, axis=1)
    ok = np.all(values + dr[:, None] + dr[None] <= limits, axis=2)
    ok &= ~(alone[:, None] & alone[None])
    same = stage[:, None] == stage[None]
    ok &= ~same | ((slot[:, None] >= 0) & (slot[None] >= 0) & (slot[:, None] != slot[None]))
    ok &= np.triu(np.ones_like(ok), 1).astype(bool)
    i, j = np.nonzero(ok)
    out = []
    for k in np.argsort(gain[i] + gain[j], kind="stable")[:limit]:
        (_, sa, ba, na, _), (_, sb, bb, nb, _) = singles[i[k]], singles[j[k]]
        stages = list(arch.stages)
        if sa == sb:  # two slots of one stage
            merged = list(arch.stages[sa])
            merged[ba], merged[bb] = na[ba], nb[bb]
            stages[sa] = tuple(merged)
        else:
            stages[sa], stages[sb] = na, nb
        cand = Arch(tuple(stages), problem.space)
        if problem.feasible_arch(cand):
            out.append((float(gain[i[k]] + gain[j[k]]), str(cand), cand))
    return out


def polish(problem: Problem, alpha: np.ndarray, beta: np.ndarray, candidates: Sequence[Optional[Arch]] = (),
           warm_start: Sequence[Arch] = (), max_evals: int = 64, patience: int = 8,
           relinearise: int = 3) -> Tuple[Arch, dict]:
    """The best feasible architecture the final discrete step finds from the relaxed (α, β) (module docstring).

    Args:
        candidates: the searcher's own architectures (infeasible ones are skipped).
        warm_start: architectures of a tighter target in a sweep; kept if they meet these bounds.
        max_evals: cap on the local search's objective evaluations (the linearisations and the candidates' values
            are counted in ``polish_evals`` too, but not capped: a handful); at least the objective's
            ``polish_evals`` attribute, if it has one.
        patience: stop the local search after this many evaluated moves in a row without improvement (at least the
            objective's ``polish_patience``).
        relinearise: at most this many further linearisations at the best architecture.

    Returns:
        (arch, info) with polish_evals, polish_from (which candidate the final architecture came from:
        "searcher", "warm", "linear" or "local"), polish_moves (accepted local moves), polish_solver,
        polish_relinearised (models taken again after a stall).

    Raises:
        InfeasibleTarget: no architecture meets the bounds (``Problem.check`` refuses that earlier).
    """
    # an oracle whose discrete values are exact and cheap (search/oracle.py) may ask for a longer local search
    max_evals = max(max_evals, getattr(problem.objective, "polish_evals", 0))
    patience = max(patience, getattr(problem.objective, "polish_patience", 0))
    stall = getattr(problem.objective, "polish_stall", 0)
    if is_cell(problem.space):  # the cell space's own final step: enumeration (search/cell.py)
        from .cell import polish_cell

        return polish_cell(problem, alpha, beta, candidates, warm_start, max_evals, patience, relinearise)
    calls = _Calls(problem.objective)
    sp = problem.space
    pool: Dict[str, Tuple[Arch, str]] = {}
    for arch, src in [(a, "searcher") for a in candidates] + [(a, "warm") for a in warm_start]:
        if arch is not None and problem.feasible_arch(arch):
            pool.setdefault(str(arch), (arch, src))
    c, e = linear_model(problem, alpha, beta, calls)
    solver = None
    for r in range(relinearise + 1):
        vertex, solver = solve_separable(sp, c, e, problem.resources)
        if vertex is None:
            from .problem import InfeasibleTarget

            raise InfeasibleTarget("no architecture meets every bound", np.inf, problem.target)
        new = str(vertex) not in pool
        pool.setdefault(str(vertex), (vertex, "linear"))
        best_key = min(pool, key=lambda k: (calls.value(pool[k][0]), k))
        if not new or r == relinearise or best_key != str(vertex):
            break
        c, e = linear_model(problem, *vertex.one_hot(), calls)
    best, src = pool[best_key]
    f_best = calls.value(best)
    model_at = None  # the architecture the model (c, e) was taken at, once the local search has been there
    if best_key != str(vertex):  # the local search's model: the tangent at the architecture it starts from
        c, e = linear_model(problem, *best.one_hot(), calls)
        model_at = best_key
    model, relins = [c, e], 0

    def refresh(arch: Arch) -> None:  # step 4's stall: the model again at the best architecture so far
        nonlocal relins, model_at
        model[:] = linear_model(problem, *arch.one_hot(), calls)
        model_at, relins = str(arch), relins + 1

    moves = 0
    while True:
        best, f_best, m, evals, optimum = local_search(
            calls, best, f_best, [lambda a: _moves(problem, a, *model), lambda a: _exchanges(problem, a, *model)],
            max_evals, patience, stall=stall, refresh=refresh, stale=model_at != str(best))
        moves, max_evals, src = moves + m, max_evals - evals, "local" if m else src
        if not optimum or max_evals <= 0:
            break
        # a local optimum with evaluations to spare: the model again there, and its exact vertex, which may lie
        # beyond any one or two moves; a better one is a new start
        model[:] = linear_model(problem, *best.one_hot(), calls)
        model_at = str(best)
        vertex, _ = solve_separable(sp, *model, problem.resources)
        if vertex is None or str(vertex) in calls.memo:
            break
        f, max_evals = calls.value(vertex), max_evals - 1
        if not f < f_best - 1e-12 * max(1.0, abs(f_best)):
            break
        best, f_best, src = vertex, f, "linear"
    return best, {"polish_evals": calls.calls, "polish_from": src, "polish_moves": moves, "polish_solver": solver,
                  "polish_candidates": len(pool), "polish_relinearised": relins}
