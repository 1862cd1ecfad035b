"""``search --confidence C``: the calibration networks and, per target, the tightened bound (profiler/conformal.py).

A fitted NB201 table names its calibration networks (its training rows, measured on the device). A network the
device has measured needs no prediction: with ``--measured-margin R`` it is admitted under a target T when its
measurement × R ≤ T (R covers the drift of a re-measurement), and excluded otherwise, whatever the table predicts for
it. Every other network is admitted by its prediction × the conformal margin ≤ T, as before. ``measured_bound``
builds the latency model that says both to any searcher: the table with each measured network's entry replaced by
measurement × R / margin, so that "entry ≤ T / margin" is the right test for every network.
"""
from __future__ import annotations

import numpy as np

from profiler.errors import BadInput

MEASURED_MARGIN = 1.05  # default R: the re-measurement drift a measured network is granted (docs/BENCHMARKS.md)


def calibration(args, lut):
    """(predicted, measured, what, cells or None) for --confidence, from --calibration or the LUT's own validation;
    None without."""
    if args.confidence is None:
        for flag, given in (("--calibration", args.calibration), ("--measured-margin", args.measured_margin)):
            if given is not None:
                raise BadInput(f"{flag} is used with --confidence C; add e.g. --confidence 0.95")
        return None
    from profiler.conformal import NoCalibration, calibration_cells, calibration_pairs

    if not 0.0 < args.confidence < 1.0:
        raise BadInput(f"--confidence {args.confidence!r}: give a probability between 0 and 1, e.g. 0.95")
    try:
        return (*calibration_pairs(args.calibration or lut.data), None if args.calibration else
                calibration_cells(lut.data))
    except NoCalibration as exc:
        raise BadInput(f"--confidence: {args.calibration or lut.path}: {exc}") from None


def measured_factor(args) -> float:
    """``--measured-margin`` R (default ``MEASURED_MARGIN``); 0 turns measured admission off."""
    r = MEASURED_MARGIN if args.measured_margin is None else args.measured_margin
    if r != 0 and not 1.0 <= r < 10.0:
        raise BadInput(f"--measured-margin {r!r}: give a factor of at least 1 (e.g. 1.05), or 0 to predict every "
                       "network, measured or not")
    return float(r)


def tighten(args, cal, target: float, objective):
    """The conformal margin for one target (None without --confidence); grown for the search's selection when the
    objective ranks the calibration networks (profiler/conformal.py)."""
    if cal is None:
        return None
    from profiler.conformal import NoCalibration, tightened_target
    from search.cell import selection_scores

    try:
        conf = tightened_target(target, cal[0], cal[1], args.confidence, scores=selection_scores(objective, cal[3]))
    except NoCalibration as exc:
        raise BadInput(f"--confidence {args.confidence}: {exc}") from None
    conf["source"] = cal[2]
    return conf


def measured_cells(cal) -> dict:
    """{cell index: measured ms} of the calibration networks that name their cell (a cell measured twice keeps its
    slower measurement); empty when none do."""
    if cal is None or cal[3] is None:
        return {}
    out: dict = {}
    for cell, ms in zip(np.asarray(cal[3], int).tolist(), np.asarray(cal[1], float).tolist()):
        if np.isfinite(ms) and ms > 0:
            out[cell] = max(ms, out.get(cell, 0.0))
    return out


def measured_bound(latency, measured: dict, conf: dict, factor: float = MEASURED_MARGIN):
    """The latency model to search under ``conf["searched_target"]``: ``latency``, except that each network of
    ``measured`` (``measured_cells``) is admitted by its measurement × ``factor`` ≤ the target rather than by its
    prediction (module docstring). ``latency`` itself when ``measured`` is empty or ``factor`` is 0.

    Adds to ``conf``: "measured_margin" (``factor``), "measured_networks" (how many are named) and
    "measured_admitted" (how many of them meet the target by measurement × ``factor``).
    """
    if not measured or not factor or not hasattr(latency, "table") or not np.isfinite(conf["margin"]):
        return latency
    from profiler.nb201_model import CellLatency

    cells, ms = np.array(list(measured), int), np.array(list(measured.values()), float)
    table = np.array(latency.table, float)
    table[cells] = ms * factor / conf["margin"]
    conf.update(measured_margin=float(factor), measured_networks=len(cells),
                measured_admitted=int((ms * factor <= conf["target"]).sum()))
    info = dict(latency.info, measured={"networks": len(cells), "factor": float(factor), "margin": float(conf["margin"])})
    return CellLatency(latency.name, latency.unit, table, latency.space, info)
