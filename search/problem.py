"""The hard-constrained search problem every searcher takes, its result, and ``solve`` with the searcher registry.

HardCoRe-NAS (Nayman et al., ICML 2021) eq. (6): min_{α,β} f(α, β) s.t. LAT(α, β) ≤ T, α_{s,b} ∈ Δ, β_s ∈ Δ, with
LAT from eq. (3). Here any number of linear resources (eq. (3) form) may be bounded at once; the first is the
latency target. The objective is an oracle ``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)`` — the frozen
supernet on a validation batch in real use, an analytic function in tests.

Adding a searcher is one entry in ``ALGOS`` — ``"name": "module:function"`` (imported on first use, so a searcher
module may import this one) or the function itself — and a function ``(problem: Problem, steps, seed, **kw) ->
SearchResult``.
"""
from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from profiler.errors import ExitStatus, LutnasError
from profiler.lut import Lut
from profiler.space import Arch, Space

from profiler.model import LinearResource

Objective = Callable[[np.ndarray, np.ndarray], Tuple[float, np.ndarray, np.ndarray]]
RTOL = 1e-9  # relative slack when checking a bound: below floating-point noise of eq. (3), above nothing else


def objective_value(objective: Objective, alpha: np.ndarray, beta: np.ndarray) -> float:
    """f(α, β) without its gradient: the objective's ``value(alpha, beta)`` when it has one (a supernet oracle then
    skips its gradient pass: a discrete candidate costs one forward pass), else the loss of a full call."""
    value = getattr(objective, "value", None)
    return float(value(alpha, beta) if value is not None else objective(alpha, beta)[0])


class InfeasibleTarget(LutnasError):
    """No architecture of the space meets the bound(s); ``minimum`` is the smallest achievable value."""

    status = ExitStatus.INFEASIBLE

    def __init__(self, message: str, minimum: float, target: float, resource: str = "latency"):
        super().__init__(message)
        self.minimum, self.target, self.resource = minimum, target, resource


class InfeasibleResultWarning(UserWarning):
    """A searcher returned an architecture that violates a bound (``SearchResult.feasible`` is False)."""


class UnknownAlgo(LutnasError, KeyError):
    status = ExitStatus.BAD_INPUT

    def __str__(self) -> str:
        return self.args[0]


def _fmt(v: float, unit: str) -> str:
    return f"{v:.2f} {unit}" if unit == "ms" else f"{v:.4g}{(' ' + unit) if unit else ''}"


@dataclass
class Problem:
    """min f(α, β) s.t. R_k(α, β) ≤ bound_k for every (R_k, bound_k) in ``resources``; the first is the latency."""

    space: Space
    resources: List[Tuple[LinearResource, float]]
    objective: Objective

    def __post_init__(self) -> None:
        if not self.resources:
            raise ValueError("a problem needs at least the latency resource and its target")
        for res, _ in self.resources:
            if res.space != self.space:
                raise ValueError(f"resource {res.name!r} was built for space {res.space.name!r}, not this one")
        # unique names for traces and results (two LUT latencies may both be called 'latency')
        names: List[str] = []
        for res, _ in self.resources:
            n, k = res.name, 2
            while n in names:
                n, k = f"{res.name}#{k}", k + 1
            names.append(n)
        self.names = names

    @property
    def latency(self) -> LinearResource:
        return self.resources[0][0]

    @property
    def target(self) -> float:
        return self.resources[0][1]

    def values(self, alpha: np.ndarray, beta: np.ndarray) -> Dict[str, float]:
        return {n: float(res.predict(alpha, beta)) for n, (res, _) in zip(self.names, self.resources)}

    def slack(self, bound: float) -> float:
        return RTOL * max(1.0, abs(bound))

    def feasible(self, alpha: np.ndarray, beta: np.ndarray) -> bool:
        """Every bound met by (α, β), up to ``RTOL`` relative."""
        return all(float(res.predict(alpha, beta)) <= b + self.slack(b) for res, b in self.resources)

    def feasible_arch(self, arch: Arch) -> bool:
        return self.feasible(*arch.one_hot())

    def check(self) -> None:
        """Refuse bounds no architecture can meet, with the minimum achievable value in the message.

        Raises:
            InfeasibleTarget: a bound is below its resource's minimum over the space, or the bounds cannot be met
                together (then ``minimum`` is the smallest latency meeting the other bounds, inf if none does).
        """
        for i, (res, bound) in enumerate(self.resources):
            lo = res.min_value()
            if bound < lo - self.slack(lo):
                what, name = ("target", "latency") if i == 0 else (f"{res.name} bound", res.name)
                raise InfeasibleTarget(f"{what} {_fmt(bound, res.unit)} is below the minimum achievable {name} "
                                       f"{_fmt(lo, res.unit)} of this space on this "
                                       f"{'LUT' if res.unit == 'ms' else 'model'}", lo, bound, res.name)
        if len(self.resources) > 1:
            from .decode import is_cell

            if is_cell(self.space):  # 15,625 cells: every table at once
                ok = np.all([r.table <= b + self.slack(b) for r, b in self.resources[1:]], axis=0)
                lo = float(self.latency.table[ok].min()) if ok.any() else np.inf
            else:
                from .exact import min_value

                lo = min_value(self.latency, self.resources[1:])
            if not lo <= self.target + self.slack(self.target):
                others = ", ".join(f"{n} <= {_fmt(b, r.unit)}" for n, (r, b) in zip(self.names[1:],
                                                                                     self.resources[1:]))
                why = ("cannot be met together" if np.isinf(lo) else
                       f"leave a minimum achievable latency of {_fmt(lo, self.latency.unit)}")
                raise InfeasibleTarget(f"target {_fmt(self.target, self.latency.unit)} cannot be met: the bounds "
                                       f"{others} {why}", lo, self.target, self.latency.name)


@dataclass
class SearchResult:
    """What a searcher found. ``feasible`` is checked on the discrete ``arch`` with every resource's own model."""

    arch: Arch
    predicted_ms: float  # eq. (3) at the discrete arch, for the latency resource
    alpha: np.ndarray  # relaxed α at the end of the search (before projection)
    beta: np.ndarray
    trace: List[dict]  # per step: step, objective, latency and every resource's value at ζ_t
    algo: str
    feasible: bool
    resources: Dict[str, float]  # name -> value at the discrete arch
    target_ms: float = float("nan")
    info: dict = field(default_factory=dict)  # searcher-specific: projection path, timings, ...
    problem: Optional[Problem] = field(default=None, repr=False, compare=False)  # the bounds it was searched under


def finish(problem: Problem, algo: str, arch: Arch, alpha: np.ndarray, beta: np.ndarray, trace: List[dict],
           info: Optional[dict] = None) -> SearchResult:
    """Build the result of a searcher, checking the discrete arch against every bound; warn if one is violated."""
    a, b = arch.one_hot()
    values = problem.values(a, b)
    feasible = problem.feasible(a, b)
    if not feasible:
        over = ", ".join(f"{n} {values[n]:.4g} > {bound:.4g}" for n, (_, bound) in zip(problem.names,
                                                                                      problem.resources)
                         if values[n] > bound + problem.slack(bound))
        warnings.warn(f"{algo} returned an architecture that violates its bounds: {over}", InfeasibleResultWarning,
                      stacklevel=3)
    return SearchResult(arch=arch, predicted_ms=values[problem.names[0]], alpha=alpha, beta=beta, trace=trace,
                        algo=algo, feasible=feasible, resources=values, target_ms=problem.target,
                        info=dict(info or {}), problem=problem)


def prefer(result: SearchResult, candidates: Sequence[Arch], why: str) -> SearchResult:
    """``result``, or the best by the objective of the ``candidates`` meeting its bounds when that beats it (or it
    is infeasible); the replacement's info keeps the searcher's and says ``why`` and what the searcher found."""
    problem = result.problem
    ok = [a for a in candidates if problem.feasible_arch(a) and str(a) != str(result.arch)]
    if not ok:
        return result
    f = lambda a: objective_value(problem.objective, *a.one_hot())  # noqa: E731
    best = min(ok, key=lambda a: (f(a), str(a)))
    if result.feasible and f(best) >= f(result.arch):
        return result
    info = dict(result.info, searcher_arch=str(result.arch), **{why: True})
    return finish(problem, result.algo, best, result.alpha, result.beta, result.trace, info)


def trace_row(problem: Problem, step: int, loss: float, alpha: np.ndarray, beta: np.ndarray, **extra) -> dict:
    row = {"step": step, "objective": float(loss)}
    vals = problem.values(alpha, beta)
    row["latency"] = vals[problem.names[0]]
    row.update(vals)
    row.update(extra)
    return row


class Calls:
    """The objective's value at discrete architectures, memoised, and every oracle call counted (the final discrete
    steps, ``polish`` and ``cell.polish_cell``)."""

    def __init__(self, objective):
        self.objective, self.calls, self.memo = objective, 0, {}

    def grad(self, alpha, beta):
        self.calls += 1
        _, ga, gb = self.objective(alpha, beta)
        return np.asarray(ga, float), np.asarray(gb, float)

    def value(self, arch: Arch) -> float:
        key = str(arch)
        if key not in self.memo:
            self.calls += 1
            self.memo[key] = objective_value(self.objective, *arch.one_hot())
        return self.memo[key]


def table_bytes(res) -> bytes:
    """What a resource's predictions depend on, for cache keys: Θ of a ``LinearResource``, the whole table of a
    ``CellLatency`` (the NB201 cell space)."""
    table = res.theta if hasattr(res, "theta") else res.table
    return np.ascontiguousarray(table, dtype=np.float64).tobytes()


# name -> "module:function" (imported on first use) or the function itself
ALGOS: Dict[str, Union[str, Callable[..., SearchResult]]] = {
    "exact": "search.exact_search:exact",
    "bcsfw": "search.bcsfw:bcsfw",
    "soft": "search.soft:soft",
    "connas": "search.connas:connas",
    "dca": "search.dca:dca",
    "hypernet": "search.hypernet:hypernet",
}


def get_algo(name: str) -> Callable[..., SearchResult]:
    try:
        entry = ALGOS[name]
    except KeyError:
        raise UnknownAlgo(f"unknown searcher {name!r}; known: {', '.join(sorted(ALGOS))}") from None
    if isinstance(entry, str):
        module, _, fn = entry.partition(":")
        entry = getattr(importlib.import_module(module), fn)
    return entry


def as_resource(lut_or_model, name: str = "latency", unit: str = "ms") -> LinearResource:
    """A LinearResource (or the NB201 space's CellLatency) as is, or a LUT (``profiler.lut.Lut``) through its ``latency_model()``, eq. (3)."""
    if isinstance(lut_or_model, LinearResource):
        return lut_or_model
    from profiler.nb201_model import CellLatency

    if isinstance(lut_or_model, CellLatency):  # a table over the NB201 cells (profiler/nb201_model.py)
        return lut_or_model
    if isinstance(lut_or_model, Lut):
        from profiler.trust import api_warnings

        api_warnings(lut_or_model)  # issue 18: a rough table says so
        return lut_or_model.latency_model(name=f"{lut_or_model.device}:{name}")
    raise TypeError(f"expected a LinearResource or a Lut, got "
                    f"{type(lut_or_model).__name__}")


def solve(lut_or_model, target_ms: float, objective: Objective, algo: str = "bcsfw",
          constraints: Sequence[Tuple[LinearResource, float]] = (), steps: int = 300, seed: int = 0,
          warm_start: Sequence[Arch] = (), **kw) -> SearchResult:
    """Search the space for an architecture with latency ≤ ``target_ms`` (and every other bound) minimising f.

    Args:
        lut_or_model: the latency model — a LinearResource, or a ``Lut``.
        target_ms: T of eq. (6), in the model's unit.
        objective: ``objective(alpha, beta) -> (loss, grad_alpha, grad_beta)``; α (S, B, C), β (S, D) numpy.
        algo: a key of ``ALGOS``.
        constraints: further (LinearResource, bound) pairs, all enforced.
        steps, seed, **kw: passed to the searcher.
        warm_start: architectures found for tighter bounds (``sweep``): a searcher that takes ``warm_start`` starts
            its final discrete step from them; whatever the searcher, one meeting these bounds with a better
            objective than the searcher's answer (or a feasible one where the answer is not) is returned instead.

    Returns:
        SearchResult; ``feasible`` False (with an ``InfeasibleResultWarning``) only from searchers without a hard
        guarantee, such as "soft".

    Raises:
        InfeasibleTarget: no architecture meets the bounds (checked before searching).
        UnknownAlgo: ``algo`` is not registered.
    """
    latency = as_resource(lut_or_model)
    fn = get_algo(algo)
    problem = Problem(latency.space, [(latency, float(target_ms))] + [(r, float(b)) for r, b in constraints],
                      objective)
    problem.check()
    warm = [a for a in warm_start if problem.feasible_arch(a)]
    if warm and "warm_start" in inspect.signature(fn).parameters:
        kw["warm_start"] = warm
    return prefer(fn(problem, steps=steps, seed=seed, **kw), warm, "warm_start_won")


def sweep(lut_or_model, targets: Sequence[float], objective: Objective, algo: str = "bcsfw",
          **kw) -> List[SearchResult]:
    """``solve`` at every target, from the tightest up, each warm-started from the tighter targets' answers: a
    looser target never returns a worse objective (its predecessors' answers meet its bounds too). Then every target
    takes the best answer of the others that meets its bounds (a looser target's search may find an architecture a
    tighter one missed; ``info["shared_answer"]``). Returns the results in the order of ``targets``; ``kw`` as
    ``solve``'s.

    Raises:
        InfeasibleTarget: some target cannot be met (nothing is returned for the others either).
    """
    order = sorted(range(len(targets)), key=lambda i: float(targets[i]))
    out: Dict[int, SearchResult] = {}
    found: List[Arch] = []
    for i in order:
        # the last answer is the best so far (each is no worse than its warm starts): one candidate suffices
        r = solve(lut_or_model, targets[i], objective, algo=algo, warm_start=tuple(found[-1:]), **kw)
        if r.feasible:
            found.append(r.arch)
        out[i] = r
    return share_answers([out[i] for i in range(len(targets))])


def share_answers(results: Sequence[SearchResult]) -> List[SearchResult]:
    """Each result replaced by the best (by the objective) of all the results' architectures meeting its bounds."""
    found = [r.arch for r in results if r.feasible]
    return [prefer(r, found, "shared_answer") for r in results]
