"""Relaxed architecture weights back to a discrete architecture (the one decoder every searcher uses), and the
shapes of (α, β) in each space.

HardCoRe-NAS space: α (stages, max_depth, configs), β (stages, depths). NB201 cell space: α (6 edges, 5 ops) and no
depth choice, β of shape (0, 1) — zero groups, so every per-group operation (softmax, argmax, norms) on it is a
no-op without a special case.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from profiler.space import Arch, Space


def is_cell(space) -> bool:
    """The NAS-Bench-201 cell space (profiler/nb201.py), searched over its 15,625 cells."""
    return getattr(space, "name", None) == "nb201"


def shapes(space) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """(α shape, β shape) of ``space``."""
    if is_cell(space):
        return (len(space.edges), len(space.ops)), (0, 1)
    return (space.n_stages, space.max_depth, len(space.configs)), (space.n_stages, len(space.depths))


def uniform(space) -> Tuple[np.ndarray, np.ndarray]:
    """The uniform (α, β): every group's options equally likely."""
    a, b = shapes(space)
    return np.full(a, 1.0 / a[-1]), np.full(b, 1.0 / b[-1])


def to_arch(space: Space, alpha: np.ndarray, beta: np.ndarray) -> Arch:
    """Per stage the most likely depth, per existing slot the most likely config (eq. (12) on a vertex); in the cell
    space, per edge the most likely op."""
    if is_cell(space):
        from profiler.nb201 import CellArch

        return CellArch(tuple(int(o) for o in np.argmax(alpha, -1)), space)
    stages = []
    for s in range(space.n_stages):
        d = space.depths[int(np.argmax(beta[s]))]
        stages.append(tuple(int(np.argmax(alpha[s, b])) for b in range(d)))
    return Arch(tuple(stages), space)
