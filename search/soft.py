"""Soft-penalty baseline (FBNet, Wu et al. CVPR 2019; TF-NAS, Hu et al. ECCV 2020): the bound becomes a loss term.

α = softmax(a), β = softmax(b) over logits (a, b); gradient steps (Adam) on

    L(a, b) = f(α, β) + λ Σ_k P(R_k(α, β) / T_k),    P(x) = max(0, x − 1) ("hinge", TF-NAS)  or  P(x) = x ("linear")

and the plain argmax of eq. (12) at the end. Nothing ties the discrete result to the bound: how often it violates it
depends on λ, which is what the benchmarks show against BCSFW. A violating result is returned with
``feasible=False`` and an ``InfeasibleResultWarning``, never silently.
"""
from __future__ import annotations

import numpy as np

from .problem import Problem, SearchResult, finish, trace_row
from .projection import argmax_arch


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _softmax_backward(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """∂L/∂logits from ∂L/∂p for p = softmax(logits): p ⊙ (g − ⟨p, g⟩)."""
    return p * (g - (p * g).sum(-1, keepdims=True))


def soft(problem: Problem, steps: int = 300, seed: int = 0, lam: float = 1.0, penalty: str = "hinge",
         lr: float = 0.05, init_std: float = 1e-3) -> SearchResult:
    """Gradient descent on softmax logits with the bounds as penalties; argmax (eq. (12)) at the end.

    Args:
        lam: λ, the penalty weight (relative to the objective's scale).
        penalty: "hinge" — λ·max(0, R/T − 1); "linear" — λ·R/T.
        lr: Adam step size on the logits.
        init_std: logits start at N(0, init_std²) (seeded), i.e. near uniform α, β.
    """
    if penalty not in ("hinge", "linear"):
        raise ValueError(f"unknown penalty {penalty!r}; expected 'hinge' or 'linear'")
    rng = np.random.default_rng(seed)
    sp = problem.space
    logits = [rng.normal(0.0, init_std, (sp.n_stages, sp.max_depth, len(sp.configs))),
              rng.normal(0.0, init_std, (sp.n_stages, len(sp.depths)))]
    m = [np.zeros_like(x) for x in logits]
    v = [np.zeros_like(x) for x in logits]
    b1, b2, eps = 0.9, 0.999, 1e-8
    trace = []
    for t in range(steps + 1):
        alpha, beta = _softmax(logits[0]), _softmax(logits[1])
        loss, g_alpha, g_beta = problem.objective(alpha, beta)
        g_alpha, g_beta = np.array(g_alpha, float), np.array(g_beta, float)
        pen = 0.0
        for res, bound in problem.resources:
            ratio = float(res.predict(alpha, beta)) / bound
            if penalty == "linear" or ratio > 1.0:
                pen += lam * (ratio - 1.0 if penalty == "hinge" else ratio)
                ga, gb = res.grad(alpha, beta)
                g_alpha += lam / bound * ga
                g_beta += lam / bound * gb
        trace.append(trace_row(problem, t, loss, alpha, beta, penalty=pen))
        if t == steps:
            break
        grads = [_softmax_backward(alpha, g_alpha), _softmax_backward(beta, g_beta)]
        for i, g in enumerate(grads):  # Adam
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            mhat, vhat = m[i] / (1 - b1 ** (t + 1)), v[i] / (1 - b2 ** (t + 1))
            logits[i] = logits[i] - lr * mhat / (np.sqrt(vhat) + eps)
    arch = argmax_arch(sp, alpha, beta)
    return finish(problem, "soft", arch, alpha, beta, trace, {"lam": lam, "penalty": penalty})
