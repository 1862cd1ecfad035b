"""Relaxed architecture weights back to a discrete architecture (the one decoder every searcher uses)."""
from __future__ import annotations

import numpy as np

from profiler.space import Arch, Space


def to_arch(space: Space, alpha: np.ndarray, beta: np.ndarray) -> Arch:
    """Per stage the most likely depth, per existing slot the most likely config (eq. (12) on a vertex)."""
    stages = []
    for s in range(space.n_stages):
        d = space.depths[int(np.argmax(beta[s]))]
        stages.append(tuple(int(np.argmax(alpha[s, b])) for b in range(d)))
    return Arch(tuple(stages), space)
