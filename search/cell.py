"""The NAS-Bench-201 cell space in the searchers: objectives over its cells, exact search and the final discrete step.

The space is finite (5⁶ = 15,625 cells) and every resource of it is a table over the cells
(``profiler.nb201_model.CellLatency``: a fitted latency table, params, FLOPs), relaxed multilinearly. So what the
HardCoRe space solves by Pareto composition or a MILP is solved here by enumeration:

- ``exact_cell`` (``--algo exact``): the best feasible cell of an objective that declares every cell's value
  (``cell_values()``, as ``TableObjective`` does: the accuracy surrogate, the FLOPs proxy).
- ``polish_cell``: the final discrete step of every relaxed searcher, as ``polish.polish`` does for HardCoRe: the
  objective's linearisation at the searcher's final α, c_{e,o} = ∂f/∂α_{e,o} (for a multilinear f, f with edge e
  set to o averaged over the others), minimised exactly over the feasible cells, re-linearised at the best cell while
  that improves f, then a local search over one- and two-edge changes that keep every bound (24 + 240 neighbours,
  tried in order of the linearisation's predicted gain within the same evaluation cap). At a one-hot α the
  linearisation of a multilinear f is exact for every one-edge change; the two-edge changes reach what it cannot
  see, such as a path that needs two edges to come alive (what they changed: docs/BENCHMARKS.md, NB201).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from profiler.nb201 import N_EDGES, N_OPS, CellArch, all_op_codes
from profiler.nb201_model import CellLatency

from .exact import NotSeparable
from .local import local_search
from .problem import Calls, InfeasibleTarget, Problem, finish

_CODES = all_op_codes()
_EDGE = np.arange(N_EDGES)


@dataclass(frozen=True, eq=False)
class TableObjective:
    """f(α) = the multilinear extension of one value per cell (lower is better), exact at one-hot α.

    ``values`` is indexed by ``CellArch.index``; ``what`` says what it is in reports. Called as every objective,
    ``(alpha, beta) -> (f, ∂f/∂α, ∂f/∂β = 0)``; ``cell_values()`` declares the table to ``--algo exact``.
    """

    values: np.ndarray
    what: str = "table"
    model: CellLatency = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "model", CellLatency("objective", "", self.values))

    def __call__(self, alpha, beta):
        f, g = self.model.value_and_grad(alpha)
        return f, g, np.zeros_like(np.asarray(beta, float))

    def cell_values(self) -> np.ndarray:
        return self.model.table

    def value_arch(self, arch: CellArch) -> float:
        return float(self.model.table[arch.index])


def selection_scores(objective, cells) -> Optional[np.ndarray]:
    """How much ``objective`` prefers each of the networks ``cells`` (``CellArch.index``; higher first), for
    ``profiler.conformal.selection_factor``; None when either is unknown (no per-cell values, unnamed networks)."""
    values = getattr(objective, "cell_values", None)
    if values is None or cells is None:
        return None
    return -np.asarray(values(), float)[np.asarray(cells, int)]


def feasible_mask(problem: Problem) -> np.ndarray:
    """Boolean (15625,): the cells meeting every bound (with ``Problem.slack``), by ``CellArch.index``."""
    ok = np.ones(len(_CODES), bool)
    for res, bound in problem.resources:
        ok &= res.table <= bound + problem.slack(bound)
    return ok


def _best(cost: np.ndarray, ok: np.ndarray, problem: Problem) -> CellArch:
    if not ok.any():  # Problem.check refuses this case before any searcher runs
        raise InfeasibleTarget("no architecture meets every bound", np.inf, problem.target)
    return CellArch.from_index(int(np.argmin(np.where(ok, cost, np.inf))), problem.space)


def exact_cell(problem: Problem, steps: int = 0, seed: int = 0):
    """``--algo exact`` on the cell space: the feasible cell of least value, by enumeration. ``steps`` and ``seed``
    are accepted and unused.

    Raises:
        NotSeparable: the objective declares no per-cell values (a supernet, say).
    """
    values = getattr(problem.objective, "cell_values", None)
    if values is None:
        raise NotSeparable(f"--algo exact on the NB201 space needs an objective that declares every cell's value "
                           f"(cell_values(): the accuracy surrogate, the FLOPs proxy); "
                           f"{type(problem.objective).__name__} does not: use bcsfw")
    t0 = time.perf_counter()
    ok = feasible_mask(problem)
    arch = _best(np.asarray(values(), float), ok, problem)
    a, b = arch.one_hot()
    return finish(problem, "exact", arch, a, b, [], {"method": "enumeration", "feasible_cells": int(ok.sum()),
                                                     "solve_s": time.perf_counter() - t0})


def _moves(problem: Problem, arch: CellArch, c: np.ndarray, ok: np.ndarray):
    """The one- and two-edge changes of ``arch`` meeting every bound, by the linearisation's predicted change."""
    cur = np.asarray(arch.ops)
    gain = c - c[_EDGE, cur][:, None]  # (6, 5): predicted change of setting edge e to op o
    base = cur @ (N_OPS ** np.arange(N_EDGES - 1, -1, -1))
    step = N_OPS ** np.arange(N_EDGES - 1, -1, -1)
    out = []
    for e in range(N_EDGES):
        for o in range(N_OPS):
            if o != cur[e]:
                out.append((float(gain[e, o]), base + (o - cur[e]) * step[e]))
    for e1 in range(N_EDGES):
        for e2 in range(e1 + 1, N_EDGES):
            for o1 in range(N_OPS):
                for o2 in range(N_OPS):
                    if o1 != cur[e1] and o2 != cur[e2]:
                        out.append((float(gain[e1, o1] + gain[e2, o2]),
                                    base + (o1 - cur[e1]) * step[e1] + (o2 - cur[e2]) * step[e2]))
    out = [(g, int(i)) for g, i in out if ok[i]]
    out.sort()
    return [(g, str(a), a) for g, a in ((g, CellArch.from_index(i, problem.space)) for g, i in out)]


def polish_cell(problem: Problem, alpha: np.ndarray, beta: np.ndarray,
                candidates: Sequence[Optional[CellArch]] = (), warm_start: Sequence[CellArch] = (),
                max_evals: int = 64, patience: int = 8, relinearise: int = 3) -> Tuple[CellArch, dict]:
    """The final discrete step on the cell space (module docstring); arguments and result as ``polish.polish``."""
    calls = Calls(problem.objective)
    ok = feasible_mask(problem)
    pool: Dict[str, Tuple[CellArch, str]] = {}
    for arch, src in [(a, "searcher") for a in candidates] + [(a, "warm") for a in warm_start]:
        if arch is not None and ok[arch.index]:
            pool.setdefault(str(arch), (arch, src))
    c = calls.grad(alpha, beta)[0]
    for r in range(relinearise + 1):
        vertex = _best(c[_EDGE, _CODES].sum(1), ok, problem)
        new = str(vertex) not in pool
        pool.setdefault(str(vertex), (vertex, "linear"))
        best_key = min(pool, key=lambda k: (calls.value(pool[k][0]), k))
        if not new or r == relinearise or best_key != str(vertex):
            break
        c = calls.grad(*vertex.one_hot())[0]
    best, src = pool[best_key]
    f_best = calls.value(best)
    if best_key != str(vertex):
        c = calls.grad(*best.one_hot())[0]
    model = [c]

    def moved(arch):  # the model again at every accepted move: one call here
        model[0] = calls.grad(*arch.one_hot())[0]

    best, _, moves, _, _ = local_search(calls, best, f_best, [lambda a: _moves(problem, a, model[0], ok)],
                                        max_evals, patience, moved)
    src = "local" if moves else src
    return best, {"polish_evals": calls.calls, "polish_from": src, "polish_moves": moves,
                  "polish_solver": "enumeration", "polish_candidates": len(pool)}
