"""CONNAS: hard constraints by modifying the architecture-weight gradient, not by a penalty in the loss.

"Constraint-guided Hardware-aware NAS through Gradient Modification" (CONNAS / ConNAS, ICLR 2026). The search is
DARTS-like gradient descent on architecture weights — here softmax logits ``a`` (α = softmax(a), per stage and slot
over the block configs) and ``b`` (β = softmax(b), per stage over the depths) of HardCoRe-NAS eq. (3) — driven by the
objective alone (no penalty term). Whenever the *current discrete architecture* (the argmax of eq. (12)) violates a
bound, the gradient is modified, block by block — a block is one α group (stage, slot) or one β group (stage):

    ∇'_blk = ∇_blk − R · max(‖∇‖, ε) · d_blk,        d_blk = normalise( Σ_{k violated} d_{k,blk} ),   R = 1.2

with ‖∇‖ the norm of the whole gradient. d_{k,blk} comes from the metric values of the single-block substitutions:
R_k evaluated on the argmax architecture with only that block's choice changed (``substitution_values``). For a
block with candidate values v_1..v_n and bound T (``block_direction``, the paper's three cases):

    every v_i ≤ T           → 0                                                 (the block cannot help)
    some v_i ≤ T            → normalise( Σ_{i: v_i > T} Σ_{j: v_j ≤ T} u(i → j) )
    no v_i ≤ T              → normalise( Σ_i Σ_{j: v_j < v_i} u(i → j) )       (towards cheaper, by metric order)

with u(i → j) = (e_j − e_i)/√2 the unit vector from candidate i to candidate j (ties give no vector). The block
directions of all violated bounds are summed and the sum normalised per block (``combine_directions``).

Choices made here (the brief leaves them open); the measurements behind them are in docs/searcher-measurements.md (CONNAS):

- **Where the modification acts — on ∂f/∂α** (and ∂f/∂β), before the softmax Jacobian: α are HardCoRe's
  architecture weights, and d is a direction among candidates, i.e. in α space. ∇ there is taken less its
  per-group mean (the part the softmax ignores; every d_blk sums to 0, so it is orthogonal to it anyway). The
  Jacobian then turns ∇' into logit gradients that compare candidates, p_i (∇'_fav − ∇'_i), whose sign (all
  Adam keeps) does not depend on how saturated α is. Modifying the logit gradient instead (``on="logits"``) pits
  the push on a cheap, improbable candidate against the objective's push on the favourite coordinate by coordinate;
  under Adam both rise at the same rate and the argmax stalls (infeasible results at tight targets).
- **Sign**: d points *towards* feasibility and is subtracted, so a descent step −η∇' moves along +d. Per block,
  in the space the modification acts on, ⟨−∇'_blk, d_blk⟩ ≥ −‖∇_blk‖ + R·max(‖∇‖, ε) ≥ (R − 1)‖∇‖ > 0: with R > 1
  the objective can slow but not reverse the move of any violating block towards feasibility — the reason for
  R = 1.2 — and ε keeps the push alive where ∇ vanishes (a flat objective).
- **Normalisation per block, scale by the global ‖∇‖.** Normalising the stacked direction to one unit vector
  over all blocks (the other reading) leaves each of ~25 blocks a push of about R‖∇‖/5, which the objective
  outweighs in the blocks it cares most about: the argmax then stays infeasible for the whole search at tight
  targets. Scaling each block by its own ‖∇_blk‖ stalled the same way.
- The metric values come only from ``LinearResource.predict`` on one-hot (α, β), never from ``grad()``: CONNAS
  needs no differentiable metric, and any function of a discrete architecture would do.
- Updates use Adam on the logits, as ``soft.py`` (``optimizer="sgd"`` for plain descent).
- **Selection**: among the argmax architectures of the last ``late_frac`` of the steps, the feasible one with the
  lowest objective at its one-hot (α, β) — the validation loss of that subnet, for the supernet oracle. The argmax
  hovers around the boundary late in the search (the modification switches on and off as it crosses it), so the
  late set can hold several feasible neighbours. If none is feasible, the feasible architectures seen earlier are
  ranked instead; if the search never saw one, the best-loss late architecture is returned with ``feasible=False``
  (``finish`` warns) — never hidden.

Limits: R > 1 guarantees progress *along* d, not that the argmax ever crosses into the feasible set, so a search can
end without a feasible architecture (then reported, see above). Nothing holds the relaxed (α, β) feasible, unlike BCSFW,
and the result is a late argmax architecture, not a projection.

``info``: ``objective_evals`` (gradient calls + selection evaluations), ``violating_steps`` (steps whose argmax
violated some bound, i.e. modified steps when R > 0), ``late_archs`` (distinct architectures in the late window),
``late_feasible``, ``evaluated_archs`` (architectures ranked by the objective at the end), ``distinct_archs`` (over
the whole search), ``selected_from`` ("late", "earlier" or "none-feasible").
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from profiler.model import LinearResource
from profiler.space import Arch

from .polish import polish as polish_arch
from .problem import Problem, SearchResult, finish, objective_value, trace_row
from .projection import argmax_arch
from .soft import LogitAdam, _softmax, _softmax_backward
from .stopping import Stopping, default_patience

SQRT2 = np.sqrt(2.0)


def _normalise(x: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(x))
    return x / n if n > 0.0 else np.zeros_like(x)


def block_direction(values: Sequence[float], bound: float, slack: float = 0.0) -> np.ndarray:
    """The CONNAS direction of one block: unit vector in candidate space pointing towards feasibility, or zeros.

    Args:
        values: the constrained metric of the architecture with this block set to each candidate in turn.
        bound: the constraint's bound T; candidate i is feasible when ``values[i] <= bound + slack``.
        slack: tolerance on the bound (floating-point noise of the metric).

    Returns:
        Shape (n,): 0 if every candidate is feasible (or the block has no cheaper candidate at all); the normalised
        sum of the unit vectors from each violating to each feasible candidate if some are feasible; the normalised
        sum of the unit vectors from each candidate to each strictly cheaper one if none is.
    """
    v = np.asarray(values, dtype=float)
    ok = v <= bound + slack
    n = len(v)
    if ok.all():
        return np.zeros(n)
    if ok.any():
        # Σ_{i bad} Σ_{j ok} (e_j − e_i)/√2: each ok candidate gains #bad, each bad one loses #ok
        raw = np.where(ok, float((~ok).sum()), -float(ok.sum())) / SQRT2
    else:
        cheaper = v[None, :] < v[:, None]  # cheaper[i, j]: candidate j is strictly cheaper than i
        raw = (cheaper.sum(0) - cheaper.sum(1)).astype(float) / SQRT2  # +1 per costlier i, −1 per cheaper j
    return _normalise(raw)


def _substitutions(x: np.ndarray) -> np.ndarray:
    """Every copy of the one-hot ``x`` (groups..., options) with one group's choice replaced by each option, in the
    order (group, option): shape (groups · options, *x.shape)."""
    n, C = int(np.prod(x.shape[:-1])), x.shape[-1]
    out = np.broadcast_to(x.reshape(n, C), (n, C, n, C)).copy()
    for g in range(n):
        out[g, :, g, :] = np.eye(C)  # option c replaces group g's choice
    return out.reshape(n * C, *x.shape)


def substitution_values(resource: LinearResource, alpha1: np.ndarray,
                        beta1: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The metric of the one-hot architecture (α¹, β¹) with exactly one block's choice changed, for every block.

    Returns (v_alpha, v_beta) shaped like (α¹, β¹): v_alpha[s, b, c] with slot (s, b) set to config c, v_beta[s, j]
    with stage s at depth j (the slots it adds keep α¹'s configs); in the NB201 cell space v_alpha[e, o] with edge e
    set to op o (β has no groups there). Only ``resource.predict`` on one-hot points is used, a batch of one
    architecture per (group, option), so the metric need not be differentiable nor additive.
    """
    a_batch = _substitutions(alpha1)
    v_alpha = resource.predict(a_batch, np.broadcast_to(beta1, (len(a_batch), *beta1.shape))).reshape(alpha1.shape)
    if not beta1.size:
        return v_alpha, np.zeros(beta1.shape)
    b_batch = _substitutions(beta1)
    v_beta = resource.predict(np.broadcast_to(alpha1, (len(b_batch), *alpha1.shape)), b_batch).reshape(beta1.shape)
    return v_alpha, v_beta


def constraint_direction(v_alpha: np.ndarray, v_beta: np.ndarray, bound: float,
                         slack: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """d_k: ``block_direction`` of every α group (stage, slot) and every β group (stage), stacked; each block has
    norm 1 or 0. ``v_alpha``/``v_beta`` as returned by ``substitution_values``."""
    d_alpha = np.zeros_like(v_alpha, dtype=float)
    d_beta = np.zeros_like(v_beta, dtype=float)
    for idx in np.ndindex(v_alpha.shape[:-1]):
        d_alpha[idx] = block_direction(v_alpha[idx], bound, slack)
    for idx in np.ndindex(v_beta.shape[:-1]):
        d_beta[idx] = block_direction(v_beta[idx], bound, slack)
    return d_alpha, d_beta


def combine_directions(dirs: Sequence[Tuple[np.ndarray, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """d: the constraints' directions (``constraint_direction``) summed and normalised per block (the last axis);
    a block where they cancel, or that no constraint moves, gets 0."""
    d_alpha = sum(np.asarray(d[0], float) for d in dirs)
    d_beta = sum(np.asarray(d[1], float) for d in dirs)
    return _normalise_groups(d_alpha), _normalise_groups(d_beta)


def _normalise_groups(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > 1e-12, x / np.where(n > 0.0, n, 1.0), 0.0)


def _argmax_one_hot(a: np.ndarray) -> np.ndarray:
    return np.eye(a.shape[-1])[a.argmax(-1)]


def modified_gradients(alpha: np.ndarray, beta: np.ndarray, g_alpha: np.ndarray, g_beta: np.ndarray,
                       d_alpha: np.ndarray, d_beta: np.ndarray, R: float, eps: float,
                       on: str = "alpha") -> Tuple[np.ndarray, np.ndarray]:
    """The CONNAS gradient w.r.t. the logits (a, b): ∇' = ∇ − R·max(‖∇‖, ε)·d, on α then through the softmax
    Jacobian (``on="alpha"``), or on the logit gradient itself (``on="logits"``).

    Args:
        alpha, beta: softmax of the logits.
        g_alpha, g_beta: ∂f/∂α, ∂f/∂β from the objective.
        d_alpha, d_beta: ``combine_directions``' per-block unit directions (zeros where nothing is modified).
        R, eps: strength and floor of the modification.
    """
    if on == "alpha":  # ∂f/∂α less its per-group mean: the softmax ignores it and every d block sums to 0
        ga, gb = g_alpha - g_alpha.mean(-1, keepdims=True), g_beta - g_beta.mean(-1, keepdims=True)
    elif on == "logits":
        ga, gb = _softmax_backward(alpha, g_alpha), _softmax_backward(beta, g_beta)
    else:
        raise ValueError(f"unknown on={on!r}; expected 'alpha' or 'logits'")
    k = R * max(float(np.sqrt((ga ** 2).sum() + (gb ** 2).sum())), eps)
    ga, gb = ga - k * d_alpha, gb - k * d_beta
    if on == "alpha":
        return _softmax_backward(alpha, ga), _softmax_backward(beta, gb)
    return ga, gb


def connas(problem: Problem, steps: int = 300, seed: int = 0, R: float = 1.2, eps: float = 1e-3, lr: float = 0.05,
           late_frac: float = 0.5, on: str = "alpha", optimizer: str = "adam",
           init_std: float = 1e-3, polish: bool = True, polish_evals: int = 64,
           warm_start: Sequence[Arch] = (), patience: Optional[int] = None) -> SearchResult:
    """CONNAS: descent on softmax logits with the gradient modified while the argmax architecture violates a bound;
    returns the best feasible argmax architecture of the late steps.

    Args:
        steps: gradient steps (one objective call each, plus one at the end).
        seed: seeds the initial logits; the result is a deterministic function of (problem, seed) for a
            deterministic objective.
        R: strength of the modification relative to ‖∇‖ (> 1 for the guarantee in the module docstring; 0 turns
            CONNAS into plain unconstrained descent with late selection).
        eps: floor on ‖∇‖ in the modification, in the objective's gradient units.
        lr: step size on the logits.
        late_frac: the argmax architectures of the last ``ceil(late_frac · steps)`` steps and of the end are the
            selection candidates.
        on: where the modification acts: "alpha" (∂f/∂α, default) or "logits" (see the module docstring).
        optimizer: "adam" (default, as ``soft``) or "sgd" (plain descent).
        init_std: logits start at N(0, init_std²) (seeded), i.e. near uniform α, β.
        polish: end with ``polish.polish`` from the final softmax (α, β), the selected architecture a candidate
            (exact solve of the linearisation, local search; feasible whenever the bounds can be met).
        polish_evals: cap on the local search's objective evaluations.
        warm_start: feasible architectures of a tighter target (a sweep), candidates of the polish.
        patience: stop once the argmax is unchanged for this many steps (search/stopping.py; default: the
            objective's ``patience``, 0 for none); the late window is then the last ``late_frac`` of the steps run.
    """
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"unknown optimizer {optimizer!r}; expected 'adam' or 'sgd'")
    if on not in ("alpha", "logits"):
        raise ValueError(f"unknown on={on!r}; expected 'alpha' or 'logits'")
    if not 0.0 <= late_frac <= 1.0:
        raise ValueError(f"late_frac must be in [0, 1], got {late_frac!r}")
    if R < 0.0 or eps < 0.0:
        raise ValueError(f"R and eps must be >= 0, got R={R!r}, eps={eps!r}")
    sp = problem.space
    opt = LogitAdam(sp, seed, init_std, lr)
    logits = opt.logits  # updated in place below (SGD) or by opt.step (Adam)
    seen: Dict[str, Tuple[Arch, bool]] = {}  # arch string -> (arch, feasible), in order of first sight
    history: List[Arch] = []  # the argmax architecture of every step
    trace: List[dict] = []
    violating_steps = 0
    stop = Stopping(default_patience(problem.objective, patience))
    for t in range(steps + 1):
        alpha, beta = _softmax(logits[0]), _softmax(logits[1])  # α: block configs, β: depths, eq. (3)
        loss, g_alpha, g_beta = problem.objective(alpha, beta)
        a1, b1_hot = _argmax_one_hot(logits[0]), _argmax_one_hot(logits[1])  # eq. (12): the current discrete arch
        arch = argmax_arch(sp, a1, b1_hot)
        values = [float(res.predict(a1, b1_hot)) for res, _ in problem.resources]
        violated = [(res, bound) for (res, bound), val in zip(problem.resources, values)
                    if val > bound + problem.slack(bound)]
        seen.setdefault(str(arch), (arch, not violated))
        history.append(arch)
        trace.append(trace_row(problem, t, loss, alpha, beta, violated=len(violated), arch_latency=values[0]))
        if t == steps or stop.update(str(arch)):  # an early stop keeps the last step's argmax as its end point
            break
        g_alpha, g_beta = np.asarray(g_alpha, float), np.asarray(g_beta, float)
        violating_steps += bool(violated)
        if violated and R > 0.0:
            d_alpha, d_beta = combine_directions([
                constraint_direction(*substitution_values(res, a1, b1_hot), bound, problem.slack(bound))
                for res, bound in violated])
            grads = list(modified_gradients(alpha, beta, g_alpha, g_beta, d_alpha, d_beta, R, eps, on))
        else:
            grads = [_softmax_backward(alpha, g_alpha), _softmax_backward(beta, g_beta)]
        if optimizer == "sgd":
            for i, g in enumerate(grads):
                logits[i] = logits[i] - lr * g
        else:
            opt.step(grads, t)

    run = len(history) - 1  # steps taken
    late: Dict[str, Arch] = {str(a): a for a in history[run - int(np.ceil(late_frac * run)):]}
    late_feasible = [a for a in late.values() if problem.feasible_arch(a)]
    if late_feasible:
        pool, selected_from = late_feasible, "late"
    else:  # say where the result came from; an infeasible one is flagged by finish(), never hidden
        earlier = [a for a, ok in seen.values() if ok]
        pool, selected_from = (earlier, "earlier") if earlier else (list(late.values()), "none-feasible")
    losses = [objective_value(problem.objective, *a.one_hot()) for a in pool]  # validation loss of each subnet
    best = int(np.argmin(losses))
    info = {"objective_evals": run + 1 + len(pool), "violating_steps": violating_steps, **stop.info(), "steps_used": run,
            "late_archs": len(late), "late_feasible": len(late_feasible), "evaluated_archs": len(pool),
            "distinct_archs": len(seen), "selected_from": selected_from, "selected_loss": losses[best],
            "R": R, "eps": eps, "lr": lr, "late_frac": late_frac, "on": on, "optimizer": optimizer, "steps": steps}
    arch = pool[best]
    if polish:
        arch, more = polish_arch(problem, alpha, beta, [arch], warm_start, max_evals=polish_evals)
        info.update(more)
        info["objective_evals"] += more["polish_evals"]
    return finish(problem, "connas", arch, alpha, beta, trace, info)
