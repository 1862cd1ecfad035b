"""Validate a NB201 LUT on a device: random networks built by profiler/nb201_torch.py, measured end to end, against
the LUT's prediction and against the prediction of its pieces re-measured in the same run (alternating passes, as
``validate --cycles``), so the model's error can be told apart from the device's drift."""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .lut import Lut, lut_dir
from .nb201 import NB201, CellArch, network_entries, profile_entries, random_archs
from .nb201_model import CellLatency
from .runner import Method, measure, pool_parts
from .validate import metrics


def lut_model(lut: Lut) -> CellLatency:
    """The latency model of a measured NB201 LUT (its pieces' medians)."""
    return CellLatency.from_pieces({k: v["median_ms"] for k, v in lut.entries.items()}, name=f"{lut.device}:latency")


def validate_nb201(dev, runtime: dict, batch: int, method: Method, out: Path, n: int = 50, seed: int = 0,
                   cycles: int = 2, lut: Optional[Lut] = None, archs: Optional[Sequence[CellArch]] = None,
                   progress: bool = True) -> dict:
    """Measure ``n`` random networks and the LUT's pieces in ``cycles`` alternating passes; returns the report.

    The report has ``same_run`` (prediction from the pieces measured in this run) and, with ``lut`` given,
    ``stored`` (from the LUT's own medians), each with the metrics of ``profiler.validate.metrics``, and per network
    the arch, measured median, CI and both predictions. ``pieces`` holds this run's pooled piece entries (a LUT can
    be written from them).
    """
    archs = list(archs) if archs is not None else random_archs(np.random.default_rng(seed), n)
    per = max(method.processes // cycles, 1)
    m = replace(method, processes=per, max_processes=per)
    passes = [(f"{kind} {c + 1}/{cycles}", c, entries) for c in range(cycles)
              for kind, entries in (("pieces", profile_entries(NB201)), ("networks", network_entries(archs)))]
    parts: Dict[str, List[dict]] = {}
    journals = []
    d = lut_dir(out, dev.name, NB201)
    for name, c, entries in passes:
        blob = [[k for k, _, _ in entries], str(m), c, runtime, batch]
        jpath = d / f".journal-validate-{hashlib.sha256(json.dumps(blob).encode()).hexdigest()[:12]}.jsonl"
        got, journal, _ = measure(dev, runtime, batch, m, entries, jpath, progress=progress,
                                  label=f"validate nb201 {name}")
        journals.append(journal)
        for k, v in got.items():
            parts.setdefault(k, []).append(v)
    done = {k: (v[0] if len(v) == 1 else pool_parts(k, v, m)) for k, v in parts.items()}
    meas = [done[a.key]["median_ms"] for a in archs]
    pieces = {k: v for k, v in done.items() if not k.startswith("net:")}
    same = CellLatency.from_pieces({k: v["median_ms"] for k, v in pieces.items()})
    report = {"device": dev.name, "n": len(archs), "seed": seed, "cycles": cycles, "runtime": runtime,
              "same_run": metrics([same.predict_arch(a) for a in archs], meas), "pieces": pieces,
              "networks": [{"arch": str(a), "measured_ms": done[a.key]["median_ms"],
                            "ci95_ms": done[a.key]["ci95_ms"], "same_run_ms": same.predict_arch(a)} for a in archs]}
    if lut is not None:
        stored = lut_model(lut)
        report["lut"] = str(lut.path)
        report["stored"] = metrics([stored.predict_arch(a) for a in archs], meas)
        for row, a in zip(report["networks"], archs):
            row["predicted_ms"] = stored.predict_arch(a)
    for j in journals:
        j.remove()
    return report
