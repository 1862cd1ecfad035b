"""DCA-NAS: a Lagrange multiplier on the resource constraint and a lookup graph from search-time to device bound.

Dutta, Kanvar, Agarwal, "Search-time Efficient Device Constraints-Aware Neural Architecture Search" (DCA-NAS, PReMI
2023, arXiv:2307.04443), §3. The equations are named by role here, in this project's notation (ζ = (α, β) of
HardCoRe-NAS eq. (3), as in profiler/model.py):

    constrained search        min_ζ f(ζ)  s.t.  k(ζ) ≤ K                  (K: the device bound)
    relaxed resource          k(α, β) = E[resource] under softmax(α), softmax(β) — eq. (3) form, LinearResource.predict
    Lagrangian                L(ζ, λ) = f(ζ) + Σ_k λ_k (k_k(ζ) − K'_k) / K'_k,     λ_k ≥ 0
    primal descent            logits ← Adam(logits, ∇_logits L)
    dual ascent               λ_k ← max(0, λ_k + η_k (k_k(ζ) − K'_k) / K'_k)
    derived architecture      argmax of α and β (DARTS-style, eq. (12) of HardCoRe)
    lookup graph              K' ↦ k(argmax architecture found with search-time bound K'), inverted at K

Faithful to the paper: the constraint enters as a Lagrangian term with a multiplier learned by gradient ascent, not a
hand-tuned penalty weight; the relaxed resource is the expectation under the softmax weights; the discrete result is
the argmax; and because the argmax's resource differs from the relaxed k(ζ) the method sweeps the search-time bound
K', records the discrete resource of each result (the "lookup graph") and picks the K' whose result meets the device
bound K. The graph depends on the objective and the resource table but not on K, so it is stored (JSON, atomically,
keyed by a hash of the tables, the caller's ``objective_key``, the seed and the settings) and reused for every later
target on the same device — the paper's point that one graph serves many device constraints.

Different from the paper, and why:
- The supernet is frozen (it was trained once by search/train.py), so there is no inner weight update, and the weight
  sharing and channel bottleneck of DCA-NAS (which speed up that training) have no counterpart here.
- The space is HardCoRe's chain of stages with depths (β) instead of DARTS cells; k is bilinear in (α, β).
- The multiplier term is normalised by the bound, (k − K')/K', so λ is scale-free in the resource's unit, and the dual
  step η_k is set once per run from the ratio ‖∇_logits f‖ / ‖∇_logits k_k/K'_k‖ at the start (times ``eta``), so
  the same settings work for a cross-entropy loss and an analytic test objective whose gradients differ by orders
  of magnitude. The update rule itself is the paper's projected gradient ascent.
- The graph is made monotone by a running maximum over increasing K' (not isotonic regression): the running maximum
  is never below a recorded point, so every grid point it calls "≤ K" really produced a result ≤ K. Between grid
  points it is interpolated linearly. If the search at the picked K' still returns a discrete architecture over the
  latency bound (the graph is noisy between grid points), the failed run becomes a point of the graph and K' is read
  again — between the last grid point ≤ K and the failure, like bisection — and the last of at most ``max_extra``
  more runs takes that grid point itself. Every run has the same settings (``steps`` capped at ``sweep_steps``, one
  stopping rule), so with a deterministic objective (other bounds' K' untouched) that grid point reproduces the
  sweep's run and meets the bound (docs/searcher-measurements.md, DCA); else ``feasible=False``, never hidden.
- Several bounds: the graph is built for the first (latency) bound only; the other bounds stay Lagrangian terms with
  K' = K (each with its own multiplier). ``finish`` checks the discrete result against every bound; when another bound
  is missed, its K' shrinks by the amount it was missed by (doubled on each further miss) for the next run.
- The dual step defaults to η = 2 (relative); smaller η left multi-bound results over a bound (docs/searcher-measurements.md).
"""
from __future__ import annotations

import hashlib
import json
import math
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from profiler.errors import BadInput
from profiler.space import Arch

from .polish import polish as polish_arch
from .problem import Problem, SearchResult, finish, table_bytes, trace_row
from .projection import argmax_arch
from .soft import LogitAdam, _softmax_backward
from .stopping import Stopping, default_patience

# History of the graph file layout:
# 1 — {"schema_version": 1, "graphs": {key: LookupGraph fields}}
SCHEMA_VERSION = 1

# key -> (graph, weak reference to the objective it was built with, or None when the caller named it by objective_key);
# weak, so that a cached graph never keeps a supernet alive
_GRAPHS: Dict[str, Tuple["LookupGraph", Optional[weakref.ref]]] = {}


def forget_graphs() -> None:
    """Drop the lookup graphs kept in memory (files are left alone)."""
    _GRAPHS.clear()


def _remember(key: str, graph: "LookupGraph", problem: Problem, named: bool) -> None:
    if named:
        _GRAPHS[key] = (graph, None)
        return
    try:
        _GRAPHS[key] = (graph, weakref.ref(problem.objective))
    except TypeError:  # an objective that takes no weak reference is simply not cached by identity
        pass


@dataclass(frozen=True)
class Settings:
    """What a single Lagrangian search run depends on, besides the problem, K' and the seed."""

    steps: int = 100
    lr: float = 0.1  # Adam step size on the logits
    eta: float = 2.0  # dual step, relative to the gradient-scale ratio (module docstring)
    init_std: float = 1e-3  # logits start at N(0, init_std²): near uniform α, β
    patience: int = 0  # a run ends once its argmax is unchanged this many steps (search/stopping.py; 0: never)


@dataclass
class Run:
    """One Lagrangian search run at fixed search-time bounds K'."""

    arch: Arch  # argmax of the final α, β
    alpha: np.ndarray
    beta: np.ndarray
    lam: np.ndarray  # final λ_k, one per resource
    trace: List[dict]
    steps_used: int = 0  # gradient steps taken (fewer than settings.steps when the stopping rule ended the run)


def lagrangian_search(problem: Problem, kprime: Sequence[float], settings: Settings = Settings(),
                      seed: int = 0) -> Run:
    """Gradient descent on the softmax logits of L(ζ, λ), dual ascent on λ; argmax architecture at the end.

    Args:
        kprime: the search-time bound K'_k of each resource of ``problem.resources`` (same order), all > 0.
        settings: steps, Adam step, relative dual step, logit init.
        seed: seeds the logit init.
    """
    kp = np.asarray(kprime, float)
    if kp.shape != (len(problem.resources),) or not np.all(kp > 0):
        raise ValueError(f"kprime needs one positive bound per resource ({len(problem.resources)}), got {kprime!r}")
    sp = problem.space
    opt = LogitAdam(sp, seed, settings.init_std, settings.lr)
    lam = np.zeros(len(kp))  # λ_k ≥ 0, learned
    eta = None
    trace, stop = [], Stopping(settings.patience)  # trace: one row per step
    for t in range(settings.steps + 1):
        alpha, beta = opt.probs()  # relaxed ζ
        loss, g_alpha, g_beta = problem.objective(alpha, beta)
        g_f = [np.array(g_alpha, float), np.array(g_beta, float)]
        k = np.array([float(res.predict(alpha, beta)) for res, _ in problem.resources])  # k_k(ζ), eq. (3)
        viol = (k - kp) / kp
        g_k = [res.grad(alpha, beta) for res, _ in problem.resources]
        if eta is None:  # dual step from the gradient scales at the start (module docstring)
            f_norm = math.hypot(*(np.linalg.norm(_softmax_backward(p, g)) for p, g in zip((alpha, beta), g_f)))
            eta = np.empty(len(kp))
            for i, (ga, gb) in enumerate(g_k):
                k_norm = math.hypot(np.linalg.norm(_softmax_backward(alpha, ga)),
                                    np.linalg.norm(_softmax_backward(beta, gb))) / kp[i]
                eta[i] = settings.eta * (f_norm / k_norm if f_norm > 0 and k_norm > 0 else 1.0)
        g_a, g_b = g_f
        for i, (ga, gb) in enumerate(g_k):
            g_a = g_a + lam[i] / kp[i] * ga
            g_b = g_b + lam[i] / kp[i] * gb
        trace.append(trace_row(problem, t, loss, alpha, beta, lagrangian=float(loss + lam @ viol),
                               **{f"lambda:{n}": float(x) for n, x in zip(problem.names, lam)}))
        if t == settings.steps or stop.update(str(argmax_arch(sp, alpha, beta))):
            break
        opt.step([_softmax_backward(alpha, g_a), _softmax_backward(beta, g_b)], t)  # primal descent
        lam = np.maximum(0.0, lam + eta * viol)  # dual ascent, projected on λ ≥ 0
    return Run(argmax_arch(sp, alpha, beta), alpha, beta, lam, trace, t)


# --- the lookup graph -------------------------------------------------------------------------------------------------
@dataclass
class LookupGraph:
    """K' (increasing) ↦ the latency of the discrete architecture the search returns with that search-time bound.

    ``raw`` is what each sweep run gave; ``value`` its running maximum over increasing K', the monotone graph that
    ``invert`` reads (never below a recorded point, so a grid point with value ≤ K really gave a result ≤ K).
    """

    key: str
    kprime: List[float]
    raw: List[float]
    value: List[float]
    archs: List[str]
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_points(cls, key: str, kprime: Sequence[float], raw: Sequence[float], archs: Sequence[str],
                    settings: Optional[dict] = None) -> "LookupGraph":
        order = np.argsort(kprime, kind="stable")
        kp, r = np.asarray(kprime, float)[order], np.asarray(raw, float)[order]
        return cls(key, kp.tolist(), r.tolist(), np.maximum.accumulate(r).tolist(), [archs[i] for i in order],
                   dict(settings or {}))


def invert(graph: LookupGraph, bound: float, interpolate: bool = True) -> Tuple[Optional[float], int]:
    """The largest K' whose graph value is ≤ ``bound``; returns (K', index of the last grid point ≤ bound).

    With ``interpolate``, K' lies on the straight line between that grid point and the next one (whose value is
    > bound), at the height ``bound``; otherwise it is the grid point itself. Past the last grid point the last K' is
    returned (a larger K' than the sweep tried is not trusted). (None, -1) if even the first grid point is over.
    """
    val, kp = np.asarray(graph.value), np.asarray(graph.kprime)
    ok = np.flatnonzero(val <= bound)
    if not len(ok):
        return None, -1
    i = int(ok[-1])
    if not interpolate or i + 1 >= len(kp) or val[i + 1] <= val[i]:
        return float(kp[i]), i
    frac = (bound - val[i]) / (val[i + 1] - val[i])
    return float(kp[i] + frac * (kp[i + 1] - kp[i])), i


def graph_key(problem: Problem, objective_key: str, seed: int, settings: Settings, grid) -> str:
    """Hash of everything a sweep's result depends on except the latency target."""
    h = hashlib.sha256()
    h.update(json.dumps({"space": problem.space.name, "objective": objective_key, "seed": seed,
                         "settings": {k: v for k, v in asdict(settings).items() if v or k != "patience"}, "grid": grid,
                         "version": SCHEMA_VERSION}, sort_keys=True).encode())
    for i, (res, bound) in enumerate(problem.resources):
        h.update(table_bytes(res))
        h.update(repr((getattr(res, "fixed", None), None if i == 0 else float(bound))).encode())  # the other bounds are K' = K
    return h.hexdigest()[:32]


def _read_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {"schema_version": SCHEMA_VERSION, "graphs": {}}
    except (OSError, ValueError) as exc:
        raise BadInput(f"lookup graph file {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        found = data.get("schema_version") if isinstance(data, dict) else None
        raise BadInput(f"lookup graph file {path}: schema version {found!r}, this version reads {SCHEMA_VERSION}")
    if not isinstance(data.get("graphs"), dict):
        raise BadInput(f"lookup graph file {path}: no 'graphs' object")
    return data


def _write_graph(path: Path, graph: LookupGraph) -> None:
    """Add (or replace) ``graph`` in the file by read, modify and atomic rename: the file is never half-written, but
    two processes sweeping at the same moment may each keep only their own graph (the other is swept again later)."""
    from profiler.files import atomic_write_json

    data = _read_file(path)
    data["graphs"][graph.key] = asdict(graph)
    atomic_write_json(path, data, overwrite=True)


def lookup_graph(problem: Problem, seed: int = 0, settings: Settings = Settings(), points: int = 10,
                 objective_key: Optional[str] = None, graph_path=None, reuse: bool = True,
                 kprime: Optional[Sequence[float]] = None) -> Tuple[LookupGraph, int, str]:
    """The lookup graph of ``problem``'s latency: from memory, from ``graph_path``, or by a sweep of search runs.

    Args:
        seed, settings: those of every sweep run (and part of the key).
        points: sweep runs: one at K' = the latency's maximum over the space (where the bound never binds: the
            unconstrained search), the others evenly over [minimum, top], top the larger of that run's discrete and
            relaxed latency (above it the bound would not bind either).
        kprime: an explicit K' grid instead (``points`` is then ignored).
        objective_key: the caller's name for the objective (supernet checkpoint + validation batch, say); needed to
            store the graph in a file. Without it the graph is reused only in memory, for the same objective object.
        graph_path: JSON file holding graphs by key; read, and written atomically after a sweep.
        reuse: False sweeps again even if a graph is known (and replaces it).

    Returns:
        (graph, number of sweep runs — 0 if reused, "memory" | "file" | "sweep").
    """
    if kprime is None and points < 2:
        raise ValueError(f"the lookup graph needs at least 2 grid points, got {points}")
    if graph_path is not None and objective_key is None:
        raise ValueError("graph_path needs objective_key: a stored graph is only valid for the objective it was "
                         "built with")
    key = graph_key(problem, objective_key if objective_key is not None else f"id:{id(problem.objective)}", seed,
                    settings, points if kprime is None else [float(x) for x in kprime])
    if reuse:
        hit = _GRAPHS.get(key)
        # without an objective_key the key holds id(objective), which a new object may reuse once the old one is
        # gone: the weak reference tells them apart
        if hit is not None and (hit[1] is None or hit[1]() is problem.objective):
            return hit[0], 0, "memory"
        if graph_path is not None:
            stored = _read_file(Path(graph_path))["graphs"].get(key)
            if stored is not None:
                try:
                    graph = LookupGraph(**stored)
                except TypeError as exc:
                    raise BadInput(f"lookup graph file {graph_path}: entry {key}: {exc}") from None
                _remember(key, graph, problem, named=True)
                return graph, 0, "file"
    others = [float(b) for _, b in problem.resources[1:]]
    lat = problem.latency
    grid, raw, archs, evals = [], [], [], []

    def point(kp: float) -> Run:
        run = lagrangian_search(problem, [kp] + others, settings, seed)
        grid.append(float(kp))
        raw.append(lat.predict_arch(run.arch))
        archs.append(str(run.arch))
        evals.append(run.steps_used + 1)
        return run

    if kprime is not None:
        for kp in kprime:
            point(kp)
    else:
        # K' = the maximum over the space never binds (k(ζ) ≤ max for every ζ): that run is the unconstrained search.
        # Above the larger of its discrete and relaxed latency the bound hardly binds either, so the other points go
        # evenly over [minimum, that top], where the graph changes.
        top_run = point(lat.max_value())
        lo = lat.min_value()
        top = max(raw[0], float(lat.predict(top_run.alpha, top_run.beta)))
        for kp in np.linspace(lo, top, points - 1) if top > lo else []:
            point(kp)
    graph = LookupGraph.from_points(key, grid, raw, archs, dict(asdict(settings), sweep_evals=sum(evals)))
    _remember(key, graph, problem, named=objective_key is not None)
    if graph_path is not None:
        _write_graph(Path(graph_path), graph)
    return graph, len(grid), "sweep"


def _next_kprime(graph: LookupGraph, failed: Dict[float, float], bound: float, last: bool) -> Optional[float]:
    """The K' to try after runs at the K' of ``failed`` gave a discrete latency over ``bound`` (K' -> latency).

    The failed runs become points of the graph (on a grid K' the larger latency wins) and the refined graph is
    inverted again, so the next K' lies between the last grid point ≤ bound and the nearest failure above it, like
    bisection; the ``last`` attempt takes that grid point itself, which the sweep saw meet the bound. Below the
    whole graph, the smallest failed K' shrinks by the ratio its result missed the bound by. None when that leaves no
    positive K' below every failure.
    """
    pts = dict(zip(graph.kprime, graph.raw))
    for kp, r in failed.items():
        pts[kp] = max(r, pts.get(kp, r))
    kps = sorted(pts)
    refined = LookupGraph.from_points(graph.key, kps, [pts[k] for k in kps], [""] * len(kps))
    nxt, _ = invert(refined, bound, interpolate=not last)
    if nxt is None:
        k0 = min(failed)
        nxt = k0 * bound / failed[k0]
    return nxt if 0 < nxt < min(failed) else None


def dca(problem: Problem, steps: int = 300, seed: int = 0, sweep_steps: int = 100, points: int = 10,
        lr: float = 0.1, eta: float = 2.0, init_std: float = 1e-3, max_extra: int = 3,
        objective_key: Optional[str] = None, graph_path=None, reuse: bool = True,
        interpolate: bool = True, polish: bool = True, polish_evals: int = 64,
        warm_start: Sequence[Arch] = (), patience: Optional[int] = None) -> SearchResult:
    """DCA-NAS on ``problem``: lookup graph (swept or reused), search at the K' it gives, step down if infeasible.

    Args:
        steps: gradient steps of every search run, sweep and final alike, capped at ``sweep_steps``: the final run
            must be the run the graph recorded, or the graph does not describe it (measured in the module docstring).
        seed: seeds every run (the sweep's too).
        sweep_steps: the cap on ``steps``, so that a sweep costs at most ``points`` runs of this length.
        points: sweep runs (``lookup_graph``).
        lr, eta, init_std: Adam step on the logits, relative dual step, logit init (``Settings``).
        max_extra: at most this many runs after the first when its result violates a bound.
        objective_key, graph_path, reuse: where the graph is stored and under which objective (``lookup_graph``).
        interpolate: read K' between grid points (else the grid point itself).
        polish, polish_evals, warm_start: the final discrete step from the last run's (α, β) (``polish.polish``;
            its argmax and the warm starts are candidates), its local-search cap, a tighter target's answers.
        patience: a run ends once its argmax is unchanged this many steps (default: the objective's, 0 for none).

    Returns:
        SearchResult with ``info``: runs (sweep + final), sweep_runs (0 when the graph was reused), final_runs,
        objective_evals, run_steps, steps_used and stopped (the returned run's), kprime (its K') and kprime_tried,
        kprime_others (other bounds' K'), lambda (final λ per resource), graph_reused, graph_source, graph_key, graph.
    """
    if steps < 1 or sweep_steps < 1:
        raise ValueError(f"steps and sweep_steps must be ≥ 1, got {steps}, {sweep_steps}")
    if max_extra < 0:
        raise ValueError(f"max_extra must be ≥ 0, got {max_extra}")
    settings = Settings(min(steps, sweep_steps), lr, eta, init_std, default_patience(problem.objective, patience))
    graph, sweep_runs, source = lookup_graph(problem, seed, settings, points, objective_key, graph_path, reuse)
    kp, _ = invert(graph, problem.target, interpolate)
    if kp is None:  # even the smallest K' of the sweep gave too much latency: shrink it in proportion
        kp = graph.kprime[0] * problem.target / graph.value[0]
    others = [float(b) for _, b in problem.resources[1:]]  # K' = K for the other bounds, at first
    tried: List[List[float]] = []
    failed: Dict[float, float] = {}
    shrinks, evals = [0] * len(others), graph.settings.get("sweep_evals", 0) if sweep_runs else 0
    for attempt in range(max_extra + 1):
        run = lagrangian_search(problem, [kp] + others, settings, seed)
        tried.append([kp] + others)
        evals += run.steps_used + 1
        if problem.feasible_arch(run.arch) or attempt == max_extra:
            break
        values = [res.predict_arch(run.arch) for res, _ in problem.resources]
        if values[0] > problem.target + problem.slack(problem.target):
            failed[kp] = values[0]
            nxt = _next_kprime(graph, failed, problem.target, last=attempt + 1 == max_extra)
            if nxt is None:
                break
            kp = nxt
        # another bound violated: it has no graph, so its K' shrinks by the amount it was missed by, doubled on
        # every further miss (a miss of a fraction of a block's cost can leave the argmax where it was)
        misses = [0.0 if v <= b + problem.slack(b) else v - b for v, (_, b) in zip(values[1:], problem.resources[1:])]
        shrinks = [n + (m > 0) for n, m in zip(shrinks, misses)]
        others = [kb - m * 2.0 ** (n - 1) if m > 0 else kb for kb, m, n in zip(others, misses, shrinks)]
        if min(others, default=1.0) <= 0.0:  # shrunk past zero: no K' left to try; the final discrete step decides
            break
    info = {"runs": sweep_runs + len(tried), "sweep_runs": sweep_runs, "final_runs": len(tried),
            "objective_evals": evals, "run_steps": settings.steps, "steps_used": run.steps_used,
            "kprime": tried[-1][0], "kprime_tried": [t[0] for t in tried], "kprime_others": tried[-1][1:],
            "lambda": {n: float(x) for n, x in zip(problem.names, run.lam)}, "graph_reused": source != "sweep",
            "graph_source": source, "graph_key": graph.key, "graph": {"kprime": graph.kprime, "raw": graph.raw,
                                                                       "value": graph.value}}
    info["stopped"] = f"argmax unchanged for {settings.patience} steps" if run.steps_used < settings.steps else "step cap"
    arch = run.arch
    if polish:
        arch, more = polish_arch(problem, run.alpha, run.beta, [arch], warm_start, max_evals=polish_evals)
        info.update(more)
        info["objective_evals"] += more["polish_evals"]
    return finish(problem, "dca", arch, run.alpha, run.beta, run.trace, info)
