"""A latency bound that holds on the device: the target tightened by a split-conformal margin.

A table predicts p(a); the device measures m(a). From a calibration set of networks not used to build the table
(the held-out rows of a fitted table, or the networks of a ``validate --json`` report), the split-conformal
quantile q of the ratios m/p — the ⌈(n+1)c⌉-th smallest of n — satisfies P(m ≤ q·p) ≥ c for a new network drawn
like the calibration ones (Vovk et al., "Algorithmic Learning in a Random World", 2005; Lei et al., JASA 2018). So
a network with p ≤ T' = T/q meets m ≤ T with probability at least c.

Searchers return networks with p close to the bound, and the ratio's spread depends on p (tiny networks are
noisier), so the quantile is taken over the ``neighbours`` calibration networks whose prediction is nearest T'
(T' found by a few fixed-point steps): the guarantee is then for networks near the bound, where searchers land.
With fewer calibration networks than ``neighbours``, all are used (the plain split-conformal margin).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Tuple, Union

import numpy as np

NEIGHBOURS = 400


class NoCalibration(ValueError):
    """The LUT or report has no calibration data, or too little for the confidence asked."""


def calibration_pairs(source: Union[dict, str, Path]) -> Tuple[np.ndarray, np.ndarray, str]:
    """(predicted, measured, what) from a fitted LUT's dict/file (``validation.calibration``) or a validate report
    (``networks[*].predicted_ms/measured_ms``).

    Raises:
        NoCalibration: neither is present.
    """
    what = str(source) if not isinstance(source, dict) else "the given report"
    if not isinstance(source, dict):
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise NoCalibration(f"cannot read calibration report {what}: {exc}") from None
    cal = (source.get("validation") or {}).get("calibration")
    if cal and "predicted_ms" in cal:
        return np.asarray(cal["predicted_ms"], float), np.asarray(cal["measured_ms"], float), \
            f"{cal['n']} held-out calibration networks of {source.get('provenance', what)}"
    nets = source.get("networks")
    if nets and all("predicted_ms" in r and "measured_ms" in r for r in nets):
        return (np.array([r["predicted_ms"] for r in nets], float), np.array([r["measured_ms"] for r in nets], float),
                f"{len(nets)} networks of validate report {source.get('lut', what)}")
    raise NoCalibration(f"{what} has no calibration data (a fitted LUT's validation.calibration, or a validate "
                        "--json report's networks); run validate --json REPORT on this LUT and pass that report")


def conformal_quantile(ratios: np.ndarray, confidence: float) -> float:
    """The ⌈(n+1)c⌉-th smallest ratio: P(new ratio ≤ it) ≥ c for exchangeable ratios.

    Raises:
        NoCalibration: too few ratios for ``confidence`` (needs n ≥ c/(1-c)).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} must be between 0 and 1 (e.g. 0.95)")
    r = np.sort(np.asarray(ratios, float))
    k = math.ceil((len(r) + 1) * confidence)
    if k > len(r):
        need = math.ceil(confidence / (1.0 - confidence))
        raise NoCalibration(f"confidence {confidence} needs at least {need} calibration networks; have {len(r)}")
    return float(r[k - 1])


def tightened_target(target: float, predicted, measured, confidence: float, neighbours: int = NEIGHBOURS,
                     steps: int = 10) -> dict:
    """T' such that a network predicted at ≤ T' measures ≤ ``target`` with probability ≥ ``confidence``.

    Returns {"target", "searched_target", "margin" (q = target / T'), "confidence", "calibration_n"}.
    """
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    ok = (p > 0) & np.isfinite(p) & np.isfinite(m)
    p, m = p[ok], m[ok]
    k = min(neighbours, len(p))
    t_prime, seen = float(target), []
    for _ in range(steps):
        near = np.argsort(np.abs(p - t_prime), kind="stable")[:k]
        q = conformal_quantile(m[near] / p[near], confidence)
        t_new = target / q if q > 0 else 0.0
        seen.append(t_new)
        if abs(t_new - t_prime) <= 1e-9 * max(1.0, target):
            break
        t_prime = t_new
    t_prime = min(seen[-2:])  # a fixed-point step that oscillates between two neighbourhoods keeps the tighter one
    return {"target": float(target), "searched_target": float(t_prime), "margin": float(target / t_prime)
            if t_prime > 0 else float("inf"), "confidence": float(confidence), "calibration_n": int(k)}
