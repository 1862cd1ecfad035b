"""Validate a NB201 LUT on a device: random networks built by profiler/nb201_torch.py, measured end to end, against
the LUT's prediction and against the prediction of its pieces re-measured in the same run (alternating passes, as
``validate --cycles``), so the model's error can be told apart from the device's drift."""
from __future__ import annotations

import hashlib
import sys
import json
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .lut import Lut, lut_dir
from .nb201 import NB201, CellArch, network_entries, profile_entries, random_archs
from .nb201_model import CellLatency
from .runner import Method, measure, pool_parts, validate_method
from .report import metrics


def validate_nb201(dev, runtime: dict, batch: int, method: Method, out: Path, n: int = 50, seed: int = 0,
                   cycles: int = 2, lut: Optional[Lut] = None, archs: Optional[Sequence[CellArch]] = None,
                   progress: bool = True) -> dict:
    """Measure ``n`` random networks (with the calibration networks) and the LUT's pieces in ``cycles`` alternating
    passes; returns the report.

    The report has ``same_run`` (prediction from the pieces measured in this run) and, with ``lut`` given,
    ``stored`` (from the LUT's own medians), each with the metrics of ``profiler.report.metrics``, and per network
    the arch, measured median, CI and both predictions. ``pieces`` holds this run's pooled piece entries (a LUT can
    be written from them).
    """
    archs = list(archs) if archs is not None else random_archs(np.random.default_rng(seed), n)
    per = max(method.processes // cycles, 1)
    m = replace(method, processes=per, max_processes=per)
    # the calibration networks are timed in the networks' passes (same processes, same minutes as the networks
    # judged), the pieces in their own
    cal = [e for e in profile_entries(NB201) if isinstance(e[1], CellArch)]
    piece_entries = [e for e in profile_entries(NB201) if not isinstance(e[1], CellArch)]
    passes = [(f"{kind} {c + 1}/{cycles}", c, entries) for c in range(cycles)
              for kind, entries in (("pieces", piece_entries), ("networks", network_entries(archs) + cal))]
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
        stored = lut.latency_model()
        report["lut"] = str(lut.path)
        report["stored"] = metrics([stored.predict_arch(a) for a in archs], meas)
        for row, a in zip(report["networks"], archs):
            row["predicted_ms"] = stored.predict_arch(a)
    for j in journals:
        j.remove()
    return report


def run_validate_nb201(args, dev, lut: Lut) -> int:
    """``validate`` for a NB201 LUT: ``--n`` random networks and the pieces in alternating passes (``--cycles``,
    default 2), the stored and the same-run prediction printed, ``--json`` and ``--plot`` as for HardCoRe."""
    from .files import atomic_write_json
    from .report import plot

    if lut.data.get("kind") == "fitted":
        from .errors import BadInput

        raise BadInput(f"{lut.path} is fitted from whole-network measurements elsewhere ({lut.data.get('provenance')}"
                       "): its held-out report is in the file; validate measures LUTs profiled on a device")
    method = validate_method(lut.method(), args)  # the LUT's, with --budget, --processes, --rounds
    report = validate_nb201(dev, lut.runtime_for(dev), lut.data["batch"], method, Path(args.out), n=args.n,
                            seed=args.seed, cycles=max(args.cycles, 1) if args.cycles else 2, lut=lut,
                            progress=not args.quiet)
    if args.json:
        atomic_write_json(Path(args.json), report, overwrite=True)
    st, sr = report["stored"], report["same_run"]
    if args.plot:
        nets = report["networks"]
        plot(Path(args.plot), [n["predicted_ms"] for n in nets], [n["measured_ms"] for n in nets],
             f"{dev.name} nb201: {len(nets)} networks, R² {st['r2']:.4f}, ratio {st['ratio']:.4f}\n"
             f"same run: R² {sr['r2']:.4f}, ratio {sr['ratio']:.4f}, ±10 % {sr['within_10_pct']:.0f} %",
             [n["same_run_ms"] for n in nets])
    print(f"validate {dev.name}: {report['n']} NB201 networks, LUT {lut.path}", file=sys.stderr)
    print(f"  {'':<15} {'stored LUT':>11} {'same run':>11}")
    for k in ("r2", "ratio", "mape_pct", "within_5_pct", "within_10_pct", "kendall_tau", "worst_error_pct"):
        print(f"  {k:<15} {st[k]:11.4f} {sr[k]:11.4f}")
    return 0
