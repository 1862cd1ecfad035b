"""``search --accuracy CSV``: the NB201 objective, an accuracy surrogate fitted on K rows sampled from a table.

Predictor-based NAS: of a CSV of NB201 arch strings and accuracies (``--accuracy-column``), ``--k`` rows are drawn
(seeded by ``--seed``) and only their accuracies are read; the surrogate of search/nb201_surrogate.py is fitted on
them and tabulated over all 15,625 cells. The rows not drawn are never parsed: a benchmark's judge (the full table)
stays out of the search. The objective the searchers minimise is the surrogate's shortfall from the best sampled
accuracy, scaled by the sampled range, (best_K − S(a)) / (best_K − worst_K): unit-free, about 0..1 over the space,
so penalty weights and step sizes mean the same for any accuracy column. Its relaxation is the table's multilinear
extension (exact at one-hot α, differentiable in α), and it declares every cell's value, so ``--algo exact``
enumerates it.

A fit takes 15-60 s; the fitted table is kept in the state directory (``--state-dir``) keyed by the file's content,
the column, K, the seed and the surrogate size, so a second search with the same inputs reuses it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from profiler.errors import BadInput
from profiler.files import read_csv_columns
from profiler.nb201 import CellArch

SIZES = ("ensemble", "small")  # the surrogate as benchmarked; a smaller, faster one (tests, quick looks)
CACHE_VERSION = 1


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def sample_rows(path, column: str, k: int, seed: int, arch_column: str = "arch") -> Tuple[np.ndarray, np.ndarray, int]:
    """(op codes (K, 6), accuracies (K,), rows in the file) of ``k`` rows drawn without replacement by ``seed``.

    Raises:
        BadInput: the file is missing or unreadable, lacks a column, has fewer than ``k`` rows, or a drawn row has
            an unreadable arch string or accuracy.
    """
    path = Path(path)
    what = {arch_column: "NB201 arch strings", column: "accuracies"}
    rows = read_csv_columns(  # strings: only the drawn rows are parsed
        path, (arch_column, column), "--accuracy file",
        lambda want, header: f"--accuracy {path} has no column {want!r} ({what[want]}); its columns: "
        f"{', '.join(header if want == arch_column else [h for h in header if h != arch_column]) or 'none'}")
    if not 10 <= k <= len(rows):
        raise BadInput(f"--k {k}: need between 10 and the {len(rows)} rows of {path}")
    drawn = np.sort(np.random.default_rng(seed).permutation(len(rows))[:k])
    codes, acc = [], []
    for i in drawn:
        arch, value = rows[i]
        try:
            codes.append(CellArch.parse(arch).ops)
            acc.append(float(value))
        except (ValueError, TypeError) as exc:
            raise BadInput(f"--accuracy {path} line {i + 2}: {exc}") from None
        if not np.isfinite(acc[-1]):
            raise BadInput(f"--accuracy {path} line {i + 2}: {column} is {value!r}, not a finite number")
    return np.asarray(codes, int), np.asarray(acc, float), len(rows)


def _config(size: str):
    from .nb201_surrogate import SurrogateConfig

    if size not in SIZES:
        raise BadInput(f"--surrogate {size!r}: choose one of {', '.join(SIZES)}")
    return SurrogateConfig() if size == "ensemble" else SurrogateConfig(n_trees_models=2, n_mlps=1, cv_folds=0)


def fit_table(path, column: str, k: int, seed: int, size: str = "ensemble",
              state_dir: Optional[Path] = None) -> Tuple[np.ndarray, dict]:
    """(the surrogate's predicted accuracy of every cell by ``CellArch.index``, info): fitted on ``k`` drawn rows, or
    read back from ``state_dir`` when these inputs were fitted before."""
    from profiler.files import atomic_file

    config = _config(size)
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"--accuracy file {path} does not exist")
    blob = json.dumps({"file": _digest(path), "column": column, "k": k, "seed": seed, "config": asdict(config),
                       "version": CACHE_VERSION}, sort_keys=True)
    key = hashlib.sha256(blob.encode()).hexdigest()[:24]
    cache = None if state_dir is None else Path(state_dir) / f"surrogate-{key}.npz"
    if cache is not None and cache.exists():
        try:
            with np.load(cache) as z:
                return z["table"], dict(json.loads(str(z["info"])), cache="file")
        except (OSError, ValueError, KeyError):
            pass  # unreadable: fit again, and replace it
    codes, acc, n = sample_rows(path, column, k, seed)
    from .nb201_surrogate import fit_surrogate

    sur = fit_surrogate(codes, acc, config, seed=seed)
    info = {"file": path.name, "column": column, "k": k, "rows": n, "seed": seed, "surrogate": size,
            "best_sampled": float(acc.max()), "worst_sampled": float(acc.min()),
            "blend_weight_trees": sur.info.get("blend_weight_trees")}
    table = sur.predict_all()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache) as tmp, open(tmp, "wb") as f:
            np.savez(f, table=table, info=json.dumps(info))
    return table, dict(info, cache=None)


def accuracy_objective(path, column: str, k: int, seed: int, size: str = "ensemble",
                       state_dir: Optional[Path] = None):
    """(``cell.TableObjective`` of the normalised shortfall, info, predicted accuracy by ``CellArch.index``)."""
    from .cell import TableObjective

    table, info = fit_table(path, column, k, seed, size, state_dir)
    best, span = info["best_sampled"], max(info["best_sampled"] - info["worst_sampled"], 1e-12)
    what = f"accuracy surrogate of {column} ({size}, K={k} of {info['rows']} rows of {info['file']}, seed {seed})"
    return TableObjective((best - table) / span, what), info, table
