"""The NB201 accuracy/latency table (third-party data beside the repository, for tests and benchmarks only)."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from profiler.nb201 import N_EDGES, N_OPS, codes_of

from .nb201_data import nb201_csv



def load_table(path: Path | None = None) -> tuple:
    """Rows reordered to ``all_archs()`` order: ((15625, 6) op indices, {column: (15625,) float array})."""
    path = path or nb201_csv()
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    archs = codes_of([r["arch"] for r in rows]).astype(np.int64)
    order = np.argsort(archs @ (N_OPS ** np.arange(N_EDGES - 1, -1, -1)))
    if len(rows) != N_OPS ** N_EDGES or len(np.unique(archs[order], axis=0)) != len(rows):
        raise ValueError(f"{path}: expected each of the {N_OPS ** N_EDGES} NB201 architectures once")
    cols = {k: np.array([float(r[k]) for r in rows])[order] for k in rows[0] if k not in ("index", "arch")}
    return archs[order], cols
