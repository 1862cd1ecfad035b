"""``--algo exact``: the exact constrained optimum of an objective that declares per-block costs."""
from __future__ import annotations

import time

import numpy as np

from .decode import is_cell
from .exact import NotSeparable, separable_costs, solve_separable
from .problem import InfeasibleTarget, finish


def exact(problem, steps: int = 0, seed: int = 0):
    """The exact constrained optimum of an objective that declares itself separable (``separable_costs()``): Pareto
    composition for one bound, the MILP for several. ``steps`` and ``seed`` are accepted and unused.

    Raises:
        NotSeparable: the objective declares no per-block costs.
    """
    if is_cell(problem.space):  # 15,625 cells: enumeration (search/cell.py)
        from .cell import exact_cell

        return exact_cell(problem, steps, seed)
    costs = separable_costs(problem.objective)
    if costs is None:
        raise NotSeparable(f"--algo exact needs an objective that is a sum of per-block costs (it declares them with "
                           f"separable_costs()); {type(problem.objective).__name__} does not: use bcsfw")
    t0 = time.perf_counter()
    arch, how = solve_separable(problem.space, costs[0], costs[1], problem.resources)
    if arch is None:  # Problem.check refuses this case before any searcher runs
        raise InfeasibleTarget("no architecture meets every bound", np.inf, problem.target)
    a, b = arch.one_hot()
    return finish(problem, "exact", arch, a, b, [], {"method": how, "solve_s": time.perf_counter() - t0})
