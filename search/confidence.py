"""``search --confidence C``: the calibration networks and, per target, the tightened bound (profiler/conformal.py)."""
from __future__ import annotations

from profiler.errors import BadInput


def calibration(args, lut):
    """(predicted, measured, what, cells or None) for --confidence, from --calibration or the LUT's own validation;
    None without."""
    if args.confidence is None:
        if args.calibration:
            raise BadInput("--calibration is used with --confidence C; add e.g. --confidence 0.95")
        return None
    from profiler.conformal import NoCalibration, calibration_cells, calibration_pairs

    if not 0.0 < args.confidence < 1.0:
        raise BadInput(f"--confidence {args.confidence!r}: give a probability between 0 and 1, e.g. 0.95")
    try:
        return (*calibration_pairs(args.calibration or lut.data), None if args.calibration else
                calibration_cells(lut.data))
    except NoCalibration as exc:
        raise BadInput(f"--confidence: {args.calibration or lut.path}: {exc}") from None


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
