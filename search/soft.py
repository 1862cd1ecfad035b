"""Soft-penalty baseline (FBNet, Wu et al. CVPR 2019; TF-NAS, Hu et al. ECCV 2020): the bound becomes a loss term.

α = softmax(a), β = softmax(b) over logits (a, b); gradient steps (Adam) on

    L(a, b) = f(α, β) + λ Σ_k P(R_k(α, β) / T_k),    P(x) = max(0, x − 1) ("hinge", TF-NAS)  or  P(x) = x ("linear")

and the plain argmax of eq. (12) at the end. On the NB201 cell space, where the objective is a table and a discrete
cell costs one look-up, the answer is instead the best by L itself of the argmax and ``samples`` cells drawn from
the final α, as FBNet samples its final architectures from the trained distribution (there its argmax of a
near-uniform mixture left 2.0–2.8 points of true accuracy on the table; docs/BENCHMARKS.md, issue 15). Nothing ties
the discrete result to the bound: how often it violates it depends on λ, which is what the benchmarks show against
BCSFW. A violating result is returned with ``feasible=False`` and an ``InfeasibleResultWarning``, never silently.
"""
from __future__ import annotations

import numpy as np

from .decode import is_cell, shapes
from .problem import Problem, SearchResult, finish, objective_value, trace_row
from .projection import argmax_arch


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_backward(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """∂L/∂logits from ∂L/∂p for p = softmax(logits): p ⊙ (g − ⟨p, g⟩)."""
    return p * (g - (p * g).sum(-1, keepdims=True))


class LogitAdam:
    """Architecture logits (a for α, b for β) started at N(0, init_std²), seeded, and Adam steps on them.

    The relaxed-gradient searchers (soft, connas, dca) share it; ``step(grads, t)`` takes ∂L/∂(a, b) at step t.
    """

    def __init__(self, space, seed: int, init_std: float, lr: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        rng = np.random.default_rng(seed)
        self.logits = [rng.normal(0.0, init_std, shape) for shape in shapes(space)]
        self.m = [np.zeros_like(x) for x in self.logits]
        self.v = [np.zeros_like(x) for x in self.logits]
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps

    def probs(self):
        return _softmax(self.logits[0]), _softmax(self.logits[1])

    def step(self, grads, t: int) -> None:
        b1, b2 = self.b1, self.b2
        for i, g in enumerate(grads):
            self.m[i] = b1 * self.m[i] + (1 - b1) * g
            self.v[i] = b2 * self.v[i] + (1 - b2) * g * g
            mhat, vhat = self.m[i] / (1 - b1 ** (t + 1)), self.v[i] / (1 - b2 ** (t + 1))
            self.logits[i] = self.logits[i] - self.lr * mhat / (np.sqrt(vhat) + self.eps)


def _penalty(problem: Problem, alpha, beta, lam: float, penalty: str, grads: bool = True):
    """λ Σ_k P(R_k / T_k), and (with ``grads``) its gradient in (α, β)."""
    pen, g_alpha, g_beta = 0.0, 0.0, 0.0
    for res, bound in problem.resources:
        ratio = float(res.predict(alpha, beta)) / bound
        if penalty == "linear" or ratio > 1.0:
            pen += lam * (ratio - 1.0 if penalty == "hinge" else ratio)
            if grads:
                ga, gb = res.grad(alpha, beta)
                g_alpha, g_beta = g_alpha + lam / bound * ga, g_beta + lam / bound * gb
    return pen, g_alpha, g_beta


def _best_drawn(problem: Problem, arch, alpha: np.ndarray, samples: int, seed: int, lam: float, penalty: str):
    """The cell of least L among ``arch`` and ``samples`` cells drawn edge by edge from α; (cell, distinct cells)."""
    from profiler.nb201 import CellArch

    rng = np.random.default_rng(seed)
    p = alpha / alpha.sum(1, keepdims=True)
    ops = np.array([rng.choice(p.shape[1], size=samples, p=row) for row in p]).T
    cells = {str(arch): arch}
    for drawn in (CellArch(tuple(int(o) for o in row)) for row in ops):
        cells.setdefault(str(drawn), drawn)

    def loss(a):
        x, y = a.one_hot()
        return objective_value(problem.objective, x, y) + _penalty(problem, x, y, lam, penalty, grads=False)[0]

    return min(cells.values(), key=lambda a: (loss(a), str(a))), len(cells)


def soft(problem: Problem, steps: int = 300, seed: int = 0, lam: float = 1.0, penalty: str = "hinge",
         lr: float = 0.05, init_std: float = 1e-3, samples: int = 64) -> SearchResult:
    """Gradient descent on softmax logits with the bounds as penalties; argmax (eq. (12)) at the end.

    Args:
        lam: λ, the penalty weight (relative to the objective's scale).
        penalty: "hinge" — λ·max(0, R/T − 1); "linear" — λ·R/T.
        lr: Adam step size on the logits.
        init_std: logits start at N(0, init_std²) (seeded), i.e. near uniform α, β.
        samples: on the NB201 cell space, cells drawn from the final α beside the argmax; the one of least L is
            returned (0: the argmax alone). Unused on the HardCoRe space.
    """
    if penalty not in ("hinge", "linear"):
        raise ValueError(f"unknown penalty {penalty!r}; expected 'hinge' or 'linear'")
    sp = problem.space
    opt = LogitAdam(sp, seed, init_std, lr)
    trace = []
    for t in range(steps + 1):
        alpha, beta = opt.probs()
        loss, g_alpha, g_beta = problem.objective(alpha, beta)
        pen, pa, pb = _penalty(problem, alpha, beta, lam, penalty)
        g_alpha, g_beta = np.array(g_alpha, float) + pa, np.array(g_beta, float) + pb
        trace.append(trace_row(problem, t, loss, alpha, beta, penalty=pen))
        if t == steps:
            break
        opt.step([_softmax_backward(alpha, g_alpha), _softmax_backward(beta, g_beta)], t)
    arch = argmax_arch(sp, alpha, beta)
    info = {"lam": lam, "penalty": penalty}
    if samples and is_cell(sp):
        argmax = str(arch)
        arch, info["drawn_cells"] = _best_drawn(problem, arch, alpha, samples, seed, lam, penalty)
        info["from"] = "argmax" if str(arch) == argmax else "drawn"
    return finish(problem, "soft", arch, alpha, beta, trace, info)
