"""The NB201 accuracy/latency table (third-party data beside the repository, for tests and benchmarks only)."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np

from search.nb201_surrogate import N_EDGES, N_OPS, OPS

DATA_NAME = "nb201_accuracy_latency.csv.gz"


def data_path() -> Path:
    """The data file in ``shared/data/`` beside the nearest folder above this checkout that has one.

    ``<repo>/../shared`` for a clone, ``<worktrees>/../shared`` for a git worktree one level further down.
    """
    here = Path(__file__).resolve()
    for root in here.parents[1:]:
        path = root / "shared" / "data" / DATA_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{DATA_NAME} not found in shared/data/ beside any folder above {here.parents[1]}: "
                            "place the data folder beside the repository (see shared/data/README.md)")


def arch_indices(arch: str) -> list:
    """TEMPORARY until profiler.nb201 lands: '|op~0|+|op~0|op~1|+|...|' -> 6 op indices in NB201 edge order."""
    ops = [tok.split("~")[0] for node in arch.strip().strip("|").split("|+|") for tok in node.strip("|").split("|")]
    if len(ops) != N_EDGES or any(op not in OPS for op in ops):
        raise ValueError(f"not an NB201 cell string: {arch!r}")
    return [OPS.index(op) for op in ops]


def load_table(path: Path | None = None) -> tuple:
    """Rows reordered to ``all_archs()`` order: ((15625, 6) op indices, {column: (15625,) float array})."""
    path = path or data_path()
    with gzip.open(path, "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    archs = np.array([arch_indices(r["arch"]) for r in rows], dtype=np.int64)
    order = np.argsort(archs @ (N_OPS ** np.arange(N_EDGES - 1, -1, -1)))
    if len(rows) != N_OPS ** N_EDGES or len(np.unique(archs[order], axis=0)) != len(rows):
        raise ValueError(f"{path}: expected each of the {N_OPS ** N_EDGES} NB201 architectures once")
    cols = {k: np.array([float(r[k]) for r in rows])[order] for k in rows[0] if k not in ("index", "arch")}
    return archs[order], cols
