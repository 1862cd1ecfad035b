"""Golden outputs of the latency model and the searchers, to check that a refactor changes no result.

``python -m tests.golden.make`` rewrites both files; ``python -m tests.golden.make searchers`` only the searchers'
(a change to a searcher's algorithm legitimately changes its results: regenerate that file in the same commit).

- ``predictions.json``: for each committed LUT file under luts/, eq. (3)'s prediction of 1,000 random architectures
  (fixed seed) from the LUT's in-context, calibrated block table.
- ``searchers.json``: every registered searcher at 3 targets on one committed LUT with the FLOPs capacity objective
  of ``search`` (no supernet), small step counts, fixed seeds: the architecture found and its predicted latency.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PREDICTIONS = HERE / "predictions.json"
SEARCHERS = HERE / "searchers.json"
SEED = 12
N_ARCHS = 1000
TARGET_FRACS = (0.2, 0.5, 0.8)  # of the way from the LUT's minimum to its maximum latency
SEARCH_LUT = "luts/local/hardcore-mbv3/20261122T232635Z-onnxruntime-t1-b1.json"
# small step counts: the whole file runs in seconds; the keyword arguments are each searcher's own
SEARCHERS_KW = {
    "bcsfw": dict(steps=30),
    "soft": dict(steps=30),
    "connas": dict(steps=30),
    "dca": dict(steps=20, points=4),
    "hypernet": dict(steps=40, batch=4, grid=40, refine=4),
}


def lut_files():
    return sorted(p for p in (ROOT / "luts").rglob("*.json") if not p.name.startswith("."))


def _model(lut):
    # written with search.latency.LinearResource.from_table(lut.space, lut.block_table()) before the move
    return lut.latency_model()


def predictions() -> dict:
    from profiler.lut import Lut
    from profiler.space import random_arch

    out = {"seed": SEED, "n": N_ARCHS, "luts": {}}
    for path in lut_files():
        lut = Lut.load(path)
        model = _model(lut)
        rng = np.random.default_rng(SEED)
        archs = [random_arch(rng, lut.space) for _ in range(N_ARCHS)]
        out["luts"][str(path.relative_to(ROOT))] = {
            "archs": [str(a) for a in archs], "predicted_ms": [model.predict_arch(a) for a in archs]}
    return out


def searchers() -> dict:
    from profiler.lut import Lut
    from search.cli import capacity_objective
    from search.problem import ALGOS, solve

    lut = Lut.load(ROOT / SEARCH_LUT)
    latency = _model(lut)
    lo, hi = latency.min_value(), latency.max_value()
    targets = [lo + f * (hi - lo) for f in TARGET_FRACS]
    results = {}
    for algo in sorted(ALGOS):
        objective = capacity_objective(lut.space)  # one per searcher: caches keyed by the objective stay apart
        rows = []
        for T in targets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = solve(latency, T, objective, algo=algo, seed=0, **SEARCHERS_KW[algo])
            rows.append({"target_ms": T, "arch": str(r.arch), "predicted_ms": r.predicted_ms,
                         "feasible": bool(r.feasible)})
        results[algo] = rows
    return {"lut": SEARCH_LUT, "objective": "search.cli.capacity_objective (FLOPs)", "target_fracs": TARGET_FRACS,
            "kwargs": SEARCHERS_KW, "results": results}


def _write(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


def main(argv=None) -> int:
    which = (argv if argv is not None else sys.argv[1:]) or ["predictions", "searchers"]
    if "predictions" in which:
        _write(PREDICTIONS, predictions())
    if "searchers" in which:
        _write(SEARCHERS, searchers())
    return 0


if __name__ == "__main__":
    sys.exit(main())
