"""A latency bound that holds on the device: the target tightened by a split-conformal margin.

A table predicts p(a); the device measures m(a). From a calibration set of networks not used to build the table
(a fitted table's training rows, each predicted out of fold by a model fitted without it — the CV+ residuals of
Barber et al., Ann. Statist. 2021 — or the networks of a ``validate --json`` report), the split-conformal
quantile q of the ratios m/p — the ⌈(n+1)c⌉-th smallest of n — satisfies P(m ≤ q·p) ≥ c for a new network drawn
like the calibration ones (Vovk et al., "Algorithmic Learning in a Random World", 2005; Lei et al., JASA 2018). So
a network with p ≤ T' = T/q meets m ≤ T with probability at least c.

Searchers return networks with p close to the bound, and the ratio's spread depends on p (tiny networks are
noisier), so the quantile is taken over the ``neighbours`` calibration networks whose prediction is nearest T'
(T' found by a few fixed-point steps): the guarantee is then for networks near the bound, where searchers land.
With fewer calibration networks than ``neighbours``, all are used (the plain split-conformal margin).

A search selects: it returns the network its objective likes best under the bound, and under-predicted networks look
best (they offer more for their predicted cost), so the chosen network misses the target more often than a random
one near the bound. When the search can rank the calibration networks by its objective (a fitted NB201 table names
them; the objective declares a value per cell), ``selection_factor`` lowers the bound until the calibration
networks the objective ranks highest under it meet the target in the conformal share: the margin then holds for the
kind of network a search picks.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Tuple, Union

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
            f"{cal['n']} calibration networks ({cal.get('source', 'held-out rows')}) of {source.get('provenance', what)}"
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
                     steps: int = 10, scores=None) -> dict:
    """T' such that a network predicted at ≤ T' measures ≤ ``target`` with probability ≥ ``confidence``.

    With ``scores`` (the search objective's preference for each calibration network), the margin also grows by
    ``selection_factor`` so that the network a search selects meets the target, not only a random one.

    Returns {"target", "searched_target", "margin" (q = target / T'), "confidence", "calibration_n"}, and with
    ``scores`` also "conformal_margin" (q before the selection factor), "selection_factor", "selection_met".
    """
    if scores is not None:
        out = tightened_target(target, predicted, measured, confidence, neighbours, steps)
        sel = selection_factor(target, predicted, measured, scores, out["margin"], confidence)
        margin = out["margin"] * sel["factor"]
        return dict(out, searched_target=float(target / margin), margin=float(margin),
                    conformal_margin=out["margin"], selection_factor=sel["factor"], selection_met=sel["met"],
                    selection_k=sel["k"], selection_capped=sel["capped"])
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


def calibration_cells(source: dict) -> Optional[np.ndarray]:
    """The calibration networks of a fitted NB201 LUT as ``CellArch.index`` values (aligned with
    ``calibration_pairs``), or None when the LUT does not say which networks they are."""
    cells = ((source.get("validation") or {}).get("calibration") or {}).get("cells")
    return None if cells is None else np.asarray(cells, int)


def selection_factor(target: float, predicted, measured, scores, margin: float, confidence: float,
                     k: Optional[int] = None, max_factor: float = 4.0) -> dict:
    """The factor λ ≥ 1 by which ``margin`` must grow so that the network a search *selects* meets ``target``.

    A search does not draw a network at random: it returns the one its objective ranks best among those predicted
    under the bound, and a network whose latency is under-predicted looks cheap for what it offers, so it is chosen
    more often than its share (the winner's curse). The split-conformal quantile holds for a random network near the
    bound, not for the chosen one. So the bound B = target / (margin · λ) is lowered along a geometric grid
    (λ = 1 .. ``max_factor``) until, of the ``k`` calibration networks predicted ≤ B that the objective ranks highest
    (the ones a search under B would consider first), at least ⌈(k + 1) · confidence⌉ measure ≤ ``target``: the
    split-conformal count for a new network exchangeable with those k. The default k = ⌈c / (1 − c)⌉ (19 at 0.95) is
    the smallest count that can certify the confidence, i.e. all k must meet it: the most selective check the
    calibration allows (a search picks the single best network, more selective still; docs/BENCHMARKS.md shows how
    close this comes). With fewer than ``k`` networks under B the plain margin stands.

    Args:
        scores: the search objective's preference for each calibration network (higher is chosen first).

    Returns:
        {"factor": λ, "met": the share of the k top-ranked networks meeting the target at λ, "k": k, "capped":
        whether λ reached ``max_factor`` without meeting the count (then λ is the smallest that reached the best
        share)}.
    """
    p, m, s = (np.asarray(x, float) for x in (predicted, measured, scores))
    ok = (p > 0) & np.isfinite(p) & np.isfinite(m) & np.isfinite(s)
    order = np.argsort(-s[ok], kind="stable")
    p, m = p[ok][order], m[ok][order]  # best-ranked first
    k = k or math.ceil(confidence / (1.0 - confidence) - 1e-9)
    need = math.ceil((k + 1) * confidence - 1e-9)
    met, best = 1.0, None
    for lam in np.exp(np.linspace(0.0, np.log(max_factor), 161)):
        top = np.flatnonzero(p * margin * lam <= target)[:k]
        if len(top) < k:
            return {"factor": float(lam), "met": met, "k": k, "capped": False}
        hits = int((m[top] <= target).sum())
        met = hits / k
        if hits >= need:
            return {"factor": float(lam), "met": met, "k": k, "capped": False}
        if best is None or hits > best[0]:
            best = (hits, float(lam))
    # never certified: a network under every bound tried (the Pixel 3's disconnected cells, predicted at the 0.02 ms
    # floor and measured up to 8.9 ms) keeps failing the count however low the bound goes. Lowering it further only
    # leaves worse networks to pick from, so the smallest factor that reached the best count stands
    return {"factor": best[1], "met": best[0] / k, "k": k, "capped": True}
