"""Hypernetwork family searcher: one hypernetwork, trained once, gives an architecture for any budget.

Firsov, "Neural architecture search with target hardware control" (Intelligent Systems Phystech; paper and code in
intsystems/Firsov_KOT_DARTS), which extends DARTS-CC (Yakovlev et al., "Neural architecture search with structure
complexity control", 2021) with FBNet's measured-latency loss and Gumbel-softmax (Wu et al., CVPR 2019):

    complexity vector      S ∈ Δ^K = {S ∈ R^{K+1} | Σ_i S_i = 1, S_i ≥ 0}                        (paper §2.1)
    hypernetwork           (logits_α, logits_β) = H_a(S)                          "α: (S, a) ↦ Γ"
    architecture sample    γ ~ GS(H_a(S), t),   t annealed linearly 1.0 → 0.2 over training
    single-level loss      min_a  E_{S ~ U(Δ^K)} E_{γ ~ GS(H_a(S), t)} [ L_task(γ) + κ · Latency(γ) ]    (§2.2)

Latency(γ) is the LUT sum of the sampled blocks: HardCoRe-NAS eq. (3), ``LinearResource.predict_torch`` at γ.

**How S sets the trade-off (this module's exact mapping).** With K bounded resources R_1 (the latency) … R_K,
S = (s_0, s_1, …, s_K) weights the task and each resource; per sample the loss is::

    ℓ(γ; S) = s_0 · f(γ) / F  +  κ_t · Σ_k s_k · (R_k(γ) − R_k^min) / (R_k^max − R_k^min)  −  λ · H(softmax H_a(S))

- R_k^min, R_k^max: extremes of R_k over the discrete space (exact), so each resource term lies in [0, 1].
- F: the linearised range of f at the uniform (α, β), Σ_{s,b} (max_c − min_c) ∂f/∂α_{s,b,c} + Σ_s (max_j − min_j)
  ∂f/∂β_{s,j} (for an f that is a sum over the chosen blocks, its range over the space up to the depth weights), so
  both kinds of term span ~1 and κ = 1 balances them. S = (1, 0, …) asks for the task's favourite architecture,
  S = e_k for the smallest R_k; s_k/s_0 acts as a Lagrange multiplier sweeping the trade-off in between.
- S ~ Dirichlet(1) (uniform on Δ^K; the paper's code: normalised Exp(1)), ``batch`` draws per step; one bound gives
  S = (s_0, s_1), the s_1 term the paper's κ·Latency.

**After training** (once per problem; cached): each S of a simplex grid gives the argmax of H(S) (HardCoRe eq. (12)),
scored by the oracle at its one-hot (α, β) (the validation loss) and by every resource. The best-loss member meeting
every bound wins, after sampling S more finely towards the nearest better-loss infeasible member. If none meets the
bounds, S is refined from the least-violating member towards the violated resources' corner (twice); if still none,
the least-violating member (one bound: the lowest latency) is returned, ``feasible=False``, and ``finish`` warns.

Faithful to the paper: S on the simplex drawn uniformly, a hypernetwork emitting all architecture logits, Gumbel-
softmax samples with the paper's linear temperature annealing 1.0 → 0.2, one single-level loss with the LUT latency of
the sampled architecture, Adam, one training for all budgets. Different, and why:
- S weights (task, R_1, …, R_K), not one component per operation type: the user controls a budget per resource.
- The network weights are not trained with H: the task loss comes from the frozen oracle ``objective(α, β)`` (the
  supernet on a validation batch, or an analytic function) at the *hard* straight-through sample; its gradient reaches
  H through the surrogate ⟨γ, ∂f/∂γ⟩, whose gradient is the oracle's (the paper's code feeds relaxed samples).
- Two additions the hard samples need (measured: docs/searcher-measurements.md, hypernetwork): κ_t ramps from 0 to κ
  over the first ``warmup`` = 30 % of the steps — a slot the sampled depth drops gets no gradient, so if the latency
  term shrinks every depth first the slots 3–4 never learn a config and deeper stages never pay off; an entropy
  bonus λ = 0.003 keeps the logits from saturating (with a smaller λ the straight-through gradient vanished early and
  the family collapsed). Its optimum for a linear cost c is softmax(−c/λ), whose argmax is unchanged.
- H is an MLP (two SiLU layers) plus a linear map of S (the exact trade-off of a separable f), not the code's
  interpolation between learned reference architectures; the grid and the selection under hard bounds pick S.
- Cost: ``steps · batch`` oracle calls for training (default 600 · 16 = 9600; fewer when the family's argmax on a
  coarse S grid settles, search/stopping.py), then one per distinct family member. Figures (the family alone and with
  the final discrete step of ``polish.py``, which every pick ends with): docs/search-core.md, docs/BENCHMARKS.md.

**Caching.** The training does not depend on the bounds, so it is kept in memory keyed by id(objective) (checked
against a weak reference, so a recycled id cannot match), the content hash of every resource table, and the
settings: ``search --target-ms 7,8,9`` trains once. Each architecture's validation loss is memoised with it. With
``cache_path`` H is also saved (torch.save, atomic) with the settings, the table hashes and the objective's answer at
the uniform (α, β); a later process reuses the file only if all match (one probe call decides the objective).
"""
from __future__ import annotations

import contextlib
import hashlib
import time
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from profiler.files import atomic_file
from profiler.model import LinearResource
from profiler.space import Arch, Space

from .gumbel import gumbel_softmax_st
from .polish import polish as polish_arch
from .decode import shapes, uniform
from .problem import Problem, SearchResult, finish, objective_value, table_bytes
from .projection import argmax_arch
from .stopping import Stopping, decided, default_patience

CACHE_FORMAT, CACHE_VERSION = "lutnas-hypernet", 1
MEMORY_CACHE_SIZE = 8  # trained hypernetworks kept in memory, least recently used dropped first (each ~100 kB + trace)


@dataclass(frozen=True)
class Settings:
    """Everything that changes the trained hypernetwork (the cache key, with the objective and resource tables)."""

    steps: int = 600  # Adam steps on H
    batch: int = 16  # S draws per step = oracle calls per step
    kappa: float = 1.0  # κ: resource terms vs the task term, both normalised to range ~1
    lr: float = 0.01  # Adam step size
    hidden: int = 64  # width of H's two hidden layers
    tau0: float = 1.0  # Gumbel-softmax temperature at the first step ...
    tau1: float = 0.2  # ... and at the last (linear, as in the paper)
    warmup: float = 0.3  # fraction of the steps over which κ ramps up linearly from 0
    entropy: float = 0.003  # λ of the entropy bonus on softmax(H(S))
    seed: int = 0
    patience: int = 0  # training ends once the family's argmax is unchanged this many steps (0: never)


class HyperNet(nn.Module):
    """H_a: S ∈ Δ^K → (logits_α (..., stages, max_depth, configs), logits_β (..., stages, depths))."""

    def __init__(self, k: int, space: Space, hidden: int, generator: torch.Generator):
        super().__init__()
        self.a_shape, self.b_shape = shapes(space)  # (α, β) of the space; β has no groups in the cell space
        n_out = int(np.prod(self.a_shape) + np.prod(self.b_shape))
        self.body = nn.Sequential(nn.Linear(k, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.head = nn.Linear(hidden, n_out)
        self.skip = nn.Linear(k, n_out, bias=False)  # logits linear in S: the exact trade-off of a separable f
        with torch.no_grad():  # torch's default init, but from our generator so a seed reproduces H
            for layer in (self.body[0], self.body[2], self.head):
                bound = 1.0 / np.sqrt(layer.in_features)
                layer.weight.uniform_(-bound, bound, generator=generator)
                layer.bias.uniform_(-bound, bound, generator=generator)
            self.head.weight.mul_(0.1)  # start near uniform α, β: every architecture gets sampled early on
            self.head.bias.zero_()
            self.skip.weight.zero_()

    def forward(self, S: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        out, n_a, lead = self.head(self.body(S)) + self.skip(S), int(np.prod(self.a_shape)), S.shape[:-1]
        return out[..., :n_a].reshape(*lead, *self.a_shape), out[..., n_a:].reshape(*lead, *self.b_shape)


def simplex_grid(k: int, max_points: int = 200) -> np.ndarray:
    """The points of Δ^k with coordinates in multiples of 1/m, for the largest m ≤ 64 giving ≤ max_points."""
    from math import comb

    m = 1
    while m < 64 and comb(m + 1 + k, k) <= max_points:
        m += 1

    def rec(n: int, left: int) -> List[List[int]]:
        return [[left]] if n == 1 else [[i] + r for i in range(left + 1) for r in rec(n - 1, left - i)]

    return np.array(rec(k + 1, m), dtype=float) / m


def resource_key(res: LinearResource) -> str:
    """Content hash of a resource model: name, unit, Θ, fixed and the space."""
    h = hashlib.sha256(f"{res.name}|{res.unit}|{getattr(res, 'fixed', None)!r}|{res.space.hash}|".encode())
    h.update(table_bytes(res))
    return h.hexdigest()[:16]


@dataclass
class _Trained:
    net: HyperNet
    f_scale: float  # F, the task's normalisation
    trace: List[dict]
    train_evaluations: int
    train_s: float  # seconds the training took
    losses: Dict[str, float]  # arch string -> objective at its one-hot (α, β), shared by every later call
    objective: Callable[[], object]  # a weak (or, if impossible, strong) reference to the objective it was trained on


_CACHE: "OrderedDict[tuple, _Trained]" = OrderedDict()


class _Counted:
    """The oracle with a call counter."""

    def __init__(self, objective):
        self.objective, self.calls = objective, 0

    def __call__(self, alpha: np.ndarray, beta: np.ndarray):
        self.calls += 1
        loss, ga, gb = self.objective(alpha, beta)
        return float(loss), np.asarray(ga, float), np.asarray(gb, float)


def _ref(obj) -> Callable[[], object]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


def _probe(space: Space, oracle: _Counted) -> Tuple[float, np.ndarray, np.ndarray]:
    return oracle(*uniform(space))


def _task_scale(ga: np.ndarray, gb: np.ndarray) -> float:
    """F: Σ_groups (max − min) of the gradient at the uniform point; 1 if that is degenerate."""
    f = float((ga.max(-1) - ga.min(-1)).sum() + (gb.max(-1) - gb.min(-1)).sum())
    return f if np.isfinite(f) and f > 1e-12 else 1.0


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(problem: Problem, st: Settings, oracle: _Counted, probe) -> _Trained:
    """Adam on H over ``st.steps`` steps of ``st.batch`` draws S ~ Dirichlet(1), straight-through Gumbel samples."""
    t0, calls0, K = time.monotonic(), oracle.calls, len(problem.resources)
    gen = torch.Generator().manual_seed(st.seed)
    rng = np.random.default_rng(st.seed)
    net = HyperNet(K + 1, problem.space, st.hidden, gen)
    opt = torch.optim.Adam(net.parameters(), lr=st.lr)
    f_scale = _task_scale(probe[1], probe[2])
    ranges = [(res.min_value(), max(res.max_value() - res.min_value(), 1e-12)) for res, _ in problem.resources]
    trace: List[dict] = []
    stop = Stopping(st.patience, int(st.warmup * st.steps), tolerance=0.1)  # ≤ 10 % of its choices may flip
    grid = torch.tensor(simplex_grid(K, 20)).float()
    # H's tensors hold a few thousand numbers: more threads only add synchronisation (10x slower on a busy 2-core
    # host); the oracle, a supernet in real use, keeps the caller's threads
    callers_threads = torch.get_num_threads()
    with _threads(1):
        for t in range(st.steps):
            tau = st.tau0 + (st.tau1 - st.tau0) * t / max(1, st.steps - 1)
            kappa = st.kappa * min(1.0, t / max(1.0, st.warmup * st.steps))
            S = torch.tensor(rng.dirichlet(np.ones(K + 1), size=st.batch), dtype=torch.float32)
            la, lb = net(S)
            a, b = gumbel_softmax_st(la, tau, gen), gumbel_softmax_st(lb, tau, gen)
            a_np, b_np = a.detach().double().numpy(), b.detach().double().numpy()
            f, ga, gb = np.empty(st.batch), np.empty_like(a_np), np.empty_like(b_np)
            with _threads(callers_threads):
                for i in range(st.batch):
                    f[i], ga[i], gb[i] = oracle(a_np[i], b_np[i])
            # the surrogate's gradient in (a, b) is the oracle's ∂f at the hard sample: straight through into H
            task = (a * torch.as_tensor(ga, dtype=a.dtype)).flatten(1).sum(1) + \
                (b * torch.as_tensor(gb, dtype=b.dtype)).flatten(1).sum(1)
            terms = [(res.predict_torch(a, b) - lo) / span for (res, _), (lo, span) in zip(problem.resources, ranges)]
            penalty = sum(S[:, k + 1] * r for k, r in enumerate(terms))
            neg_entropy = sum((F.softmax(x, -1) * F.log_softmax(x, -1)).flatten(1).sum(1) for x in (la, lb))
            loss = (S[:, 0] * task / f_scale + kappa * penalty + st.entropy * neg_entropy).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            values = [float(r.detach().mean()) * span + lo for r, (lo, span) in zip(terms, ranges)]
            row = {"step": t, "objective": float(f.mean()), "latency": values[0]}
            row.update(zip(problem.names, values))
            row.update(tau=tau, kappa=kappa,
                       loss=float((S[:, 0].numpy() * f / f_scale + kappa * penalty.detach().numpy()).mean()))
            trace.append(row)
            if stop.update(np.concatenate([decided(x.detach().numpy()) for x in net(grid)])):  # family on a grid
                break
    return _Trained(net=net.eval(), f_scale=f_scale, trace=trace, train_evaluations=oracle.calls - calls0,
                    train_s=time.monotonic() - t0, losses={}, objective=_ref(problem.objective))


def _save(path: Path, tr: _Trained, header: dict, probe) -> None:
    blob = dict(header, state_dict=tr.net.state_dict(), f_scale=tr.f_scale, trace=tr.trace,
                train_evaluations=tr.train_evaluations, train_s=tr.train_s, losses=dict(tr.losses),
                probe={"loss": probe[0], "grad_alpha": torch.from_numpy(probe[1]),
                       "grad_beta": torch.from_numpy(probe[2])})
    with atomic_file(path) as tmp:
        torch.save(blob, tmp)


def _load(path: Path, problem: Problem, st: Settings, header: dict, probe) -> Optional[_Trained]:
    """The hypernetwork stored at ``path`` if it was trained with these settings and resource tables on an objective
    that answers the probe point (uniform α, β) the same; None otherwise (then it is retrained, the file replaced)."""
    try:
        blob = torch.load(path, weights_only=True)
    except Exception:  # unreadable or not ours: retrain rather than fail the search
        return None
    if not isinstance(blob, dict) or any(blob.get(k) != v for k, v in header.items()):
        return None
    p = blob["probe"]
    close = lambda x, y: np.allclose(x, y, rtol=1e-6, atol=1e-12)  # noqa: E731
    if not (close(p["loss"], probe[0]) and close(p["grad_alpha"].numpy(), probe[1])
            and close(p["grad_beta"].numpy(), probe[2])):
        return None
    net = HyperNet(len(problem.resources) + 1, problem.space, st.hidden, torch.Generator())
    net.load_state_dict(blob["state_dict"])
    return _Trained(net=net.eval(), f_scale=float(blob["f_scale"]), trace=list(blob["trace"]),
                    train_evaluations=int(blob["train_evaluations"]), train_s=float(blob["train_s"]),
                    losses=dict(blob["losses"]), objective=_ref(problem.objective))


def _members(problem: Problem, tr: _Trained, points: np.ndarray, oracle: _Counted) -> List[dict]:
    """The argmax architecture of H(S) at each S with its resources and validation loss (memoised per arch)."""
    with torch.no_grad():
        la, lb = tr.net(torch.tensor(np.asarray(points), dtype=torch.float32))
        pa, pb = F.softmax(la, -1).double().numpy(), F.softmax(lb, -1).double().numpy()
    out = []
    for S, a, b in zip(points, pa, pb):
        arch = argmax_arch(problem.space, a, b)
        key = str(arch)
        oh_a, oh_b = arch.one_hot()
        if key not in tr.losses:
            oracle.calls += 1  # a discrete member's value alone: no gradient pass (problem.objective_value)
            tr.losses[key] = objective_value(problem.objective, oh_a, oh_b)
        values = problem.values(oh_a, oh_b)
        violation = sum(max(0.0, values[n] - bound) / max(abs(bound), 1e-12)
                        for n, (_, bound) in zip(problem.names, problem.resources))
        out.append({"S": [round(float(x), 6) for x in S], "arch": key, "loss": tr.losses[key],
                    "latency": values[problem.names[0]], **values, "feasible": problem.feasible(oh_a, oh_b),
                    "violation": violation, "_arch": arch, "_alpha": a, "_beta": b})
    return out


def _between(s0, s1, t) -> np.ndarray:
    t = np.asarray(t, float)[:, None]
    return (1.0 - t) * np.asarray(s0, float) + t * np.asarray(s1, float)


def _select(problem: Problem, tr: _Trained, family: List[dict], oracle: _Counted, refine: int) -> dict:
    """Best-loss member meeting every bound, refining S near the bound or towards the violated resources' corner."""
    feasible = [m for m in family if m["feasible"]]
    if feasible and refine:  # the bound usually falls between two grid points: sample that stretch of S finely
        best = min(feasible, key=lambda m: m["loss"])
        better = [m for m in family if not m["feasible"] and m["loss"] < best["loss"]]
        if better:
            near = min(better, key=lambda m: float(np.linalg.norm(np.subtract(m["S"], best["S"]))))
            family += _members(problem, tr, _between(best["S"], near["S"], np.linspace(0, 1, refine + 2)[1:-1]),
                               oracle)
    for _ in range(2 if refine else 0):
        if any(m["feasible"] for m in family):
            break
        least = min(family, key=lambda m: m["violation"])
        over = [k for k, (n, (_, b)) in enumerate(zip(problem.names, problem.resources))
                if least[n] > b + problem.slack(b)]
        corner = np.zeros(len(problem.resources) + 1)
        corner[[k + 1 for k in over]] = 1.0 / len(over)
        t = np.unique(np.concatenate([np.linspace(0, 1, refine + 1)[1:], 1.0 - np.geomspace(0.5, 1e-4, refine)]))
        family += _members(problem, tr, _between(least["S"], corner, t), oracle)
    feasible = [m for m in family if m["feasible"]]
    return min(feasible, key=lambda m: m["loss"]) if feasible else min(family, key=lambda m: m["violation"])


def hypernet(problem: Problem, steps: int = 600, seed: int = 0, batch: int = 16, kappa: float = 1.0,
             lr: float = 0.01, hidden: int = 64, tau: Tuple[float, float] = (1.0, 0.2), warmup: float = 0.3,
             entropy: float = 0.003, grid: int = 200, refine: int = 16,
             cache_path: Optional[Union[str, Path]] = None, polish: bool = True, polish_evals: int = 64,
             warm_start: Sequence[Arch] = (), patience: Optional[int] = None) -> SearchResult:
    """Train (or reuse) the hypernetwork for this problem's objective and resource tables, then pick the family
    member for this problem's bounds.

    Args:
        steps, batch: Adam steps on H and S draws per step; training costs steps·batch oracle calls.
        kappa: κ, weight of the normalised resource terms against the normalised task term.
        lr, hidden: Adam step size and hidden width of H.
        tau: Gumbel-softmax temperature at the first and the last step, annealed linearly.
        warmup: fraction of the steps over which κ ramps up from 0.
        entropy: λ, weight of the entropy bonus on softmax(H(S)).
        grid: at most this many S on the simplex grid scored after training.
        refine: S points per refinement segment (near the bound; towards the corner when nothing is feasible).
        cache_path: also keep the trained H in this file (torch.save, atomic write) and reuse it in a later process
            when the settings, the resource tables and the objective's answer at the uniform (α, β) match; a file
            that does not match is replaced.
        polish, polish_evals, warm_start: the final discrete step from the pick's softmax (α, β) (``polish.polish``;
            the member and the warm starts are candidates), its local-search cap, a tighter target's answers.

    Returns:
        SearchResult; ``info["family"]`` lists every scored member (S, arch, loss, each resource, feasible),
        ``info["trained"]`` says whether this call trained H, ``info["evaluations"]`` counts this call's oracle calls
        (``train_evaluations`` of them for training and its probe, ``family_evaluations`` for scoring members).
    """
    t0 = time.monotonic()
    st = Settings(steps=steps, batch=batch, kappa=kappa, lr=lr, hidden=hidden, tau0=tau[0], tau1=tau[1],
                  warmup=warmup, entropy=entropy, seed=seed, patience=default_patience(problem.objective, patience))
    oracle = _Counted(problem.objective)
    res_keys = tuple(resource_key(r) for r, _ in problem.resources)
    key = (id(problem.objective), res_keys, tuple(sorted(asdict(st).items())))
    tr, source = _CACHE.get(key), "memory"
    if tr is not None and tr.objective() is not problem.objective:  # an id() reused by a newer object
        tr = None
    if tr is None:
        probe = _probe(problem.space, oracle)
        header = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "settings": asdict(st),
                  "resources": list(res_keys), "space": problem.space.hash}
        tr, source = (_load(Path(cache_path), problem, st, header, probe), "disk") if cache_path else (None, None)
        if tr is None:
            tr, source = _train(problem, st, oracle, probe), None
            tr.train_evaluations += 1  # the probe
            if cache_path:
                _save(Path(cache_path), tr, header, probe)
        _CACHE[key] = tr
        while len(_CACHE) > MEMORY_CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    trained, train_calls = source is None, oracle.calls

    family = _members(problem, tr, simplex_grid(len(problem.resources), grid), oracle)
    n_grid = len(family)
    pick = _select(problem, tr, family, oracle, refine)
    info = {"trained": trained, "cache": source, "evaluations": oracle.calls,
            "train_evaluations": train_calls if trained else 0,
            "cache_check_evaluations": 0 if trained else train_calls,
            "family_evaluations": oracle.calls - train_calls, "hypernet_evaluations": tr.train_evaluations,
            "train_s": tr.train_s, "S": pick["S"], "grid_points": n_grid, "refined_points": len(family) - n_grid,
            "f_scale": tr.f_scale, "settings": asdict(st), "steps_used": len(tr.trace),
            "stopped": f"argmax unchanged for {st.patience} steps" if len(tr.trace) < st.steps else "step cap",
            "family": [{k: v for k, v in m.items() if not k.startswith("_")} for m in family],
            "search_s": time.monotonic() - t0}
    arch = pick["_arch"]
    if polish:
        arch, more = polish_arch(problem, pick["_alpha"], pick["_beta"], [arch], warm_start, max_evals=polish_evals)
        info.update(more)
        info["evaluations"] += more["polish_evals"]
    return finish(problem, "hypernet", arch, pick["_alpha"], pick["_beta"], tr.trace, info)
