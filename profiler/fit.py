"""Tables fitted from whole-network measurements: ``profile import CSV --column C``.

Reads (arch, latency_ms) rows measured elsewhere (one column per device in a shared file), fits the NB201 latency
model's feature weights (profiler/nb201_model.py) by ridge least squares on a training split, and writes a LUT JSON
with provenance ("fitted from N networks of FILE, column C"), the split, and the validation report on the held-out
rows, and the calibration pairs from which profiler/conformal.py derives the confidence margin of
``search --confidence``.

Split (reproducible from the seed): a permutation of the rows; the first ``train`` rows fit, the rest are held out
and only tested. The calibration pairs are the training rows' out-of-fold predictions: each training network
predicted by the model the cross-validation fitted without it (the CV+ residuals of Barber et al., "Predictive
inference with the jackknife+", Ann. Statist. 2021). So the margin reads nothing the table was not fitted from: the
held-out rows stay a judge, never an input (issue 15). Until 2026-11-30 the calibration pairs were half of the
held-out rows, 7,313 of the NB201 file's networks that the benchmark also judges by.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .errors import BadInput
from .files import read_csv_columns
from .lut import SCHEMA_VERSION, Lut, atomic_write_json
from .nb201 import NB201, CellArch, connected
from .nb201_model import FEATURE_KINDS, CellLatency, features
from .report import metrics

DEFAULT_KINDS = ("op", "live", "used", "disconnected", "pair")
# (ridge on op/live/disconnected weights, ridge on pair weights or None to leave pairs out), chosen by 5-fold CV
RIDGE_GRID: Tuple[Tuple[float, Optional[float]], ...] = (
    (0.01, None), (0.1, None), (1.0, None), (0.1, 10.0), (1.0, 10.0), (0.1, 100.0), (1.0, 100.0), (1.0, 1000.0))


def read_csv(path: Path, column: str, arch_column: str = "arch") -> Tuple[np.ndarray, np.ndarray]:
    """(op codes (n, 6), latency (n,)) from a CSV (optionally .gz) with an NB201 arch column and ``column``.

    Raises:
        BadInput: the file is missing, lacks a column, or a row has an unreadable arch or latency.
    """
    path = Path(path)
    rows = read_csv_columns(path, (arch_column, column), "CSV file", lambda want, header: (
        f"{path} has no column {want!r}; latency columns there: "
        f"{', '.join(h for h in header if h.endswith('_ms')) or 'none'}"))
    codes, y = [], []
    for i, (arch, value) in enumerate(rows, start=2):
        try:
            codes.append(CellArch.parse(arch).ops)
            y.append(float(value))
        except (ValueError, TypeError) as exc:
            raise BadInput(f"{path} line {i}: {exc}") from None
    y = np.asarray(y, float)
    if len(y) < 20 or not np.all(np.isfinite(y) & (y > 0)):
        raise BadInput(f"{path} column {column!r}: need at least 20 rows of positive latencies, got {len(y)} "
                       f"({int((~(np.isfinite(y) & (y > 0))).sum())} not positive)")
    return np.asarray(codes, int), y


def split(n: int, train: int, seed: int) -> Dict[str, np.ndarray]:
    """Row indices of the train and test (held-out) parts (see the module docstring)."""
    if not 10 <= train <= n - 10:
        raise BadInput(f"--train {train}: need at least 10 training rows and 10 held out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return {"train": perm[:train], "test": perm[train:]}


def _ridge(x: np.ndarray, y: np.ndarray, pen: np.ndarray) -> np.ndarray:
    return np.linalg.solve(x.T @ x + np.diag(pen), x.T @ y)


def _penalty(names: Sequence[str], lam: float, lam_pair: Optional[float]) -> Tuple[np.ndarray, np.ndarray]:
    """(per-column ridge, columns used); the bias is never penalised, pairs dropped when ``lam_pair`` is None."""
    pair = np.array([n.startswith("pair:") for n in names])
    use = ~pair if lam_pair is None else np.ones(len(names), bool)
    pen = np.where(pair, lam_pair or 0.0, lam)
    pen[0] = 0.0
    return pen[use], use


def candidate_kinds(kinds: Sequence[str]) -> List[Tuple[str, ...]]:
    """The feature sets CV chooses among: 'op' alone, then each richer combination of the kinds asked for."""
    extra = [k for k in FEATURE_KINDS if k != "op" and k in kinds]
    out = []
    for mask in range(1 << len(extra)):
        out.append(("op",) + tuple(k for i, k in enumerate(extra) if mask >> i & 1))
    return out


def fit_weights(codes: np.ndarray, y: np.ndarray, kinds: Sequence[str] = DEFAULT_KINDS, seed: int = 0,
                grid=RIDGE_GRID, folds: int = 5) -> Tuple[List[str], np.ndarray, dict]:
    """Ridge weights over ``features(codes, K)``; the feature set K (among ``candidate_kinds(kinds)``) and the ridge
    strengths chosen by ``folds``-fold CV on these rows (terms that do not help held-out error are left out).

    Returns (names, weights with zeros for columns left out, {"kinds", "ridge", "ridge_pair", "cv_rmse_ms"}, and
    "out_of_fold": each row predicted by the chosen model fitted on the other folds).
    """
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    best = None
    for ks in candidate_kinds(kinds):
        x, names = features(codes, ks)
        for lam, lam_pair in (g for g in grid if (g[1] is None) == ("pair" not in ks)):
            pen, use = _penalty(names, lam, lam_pair)
            held = np.empty(len(y))
            for k in range(folds):
                tr, te = fold != k, fold == k
                held[te] = x[te][:, use] @ _ridge(x[tr][:, use], y[tr], pen)
            rmse = float(np.mean((held - y) ** 2)) ** 0.5
            if best is None or rmse < best[0]:
                best = (rmse, ks, lam, lam_pair, held)
    rmse, ks, lam, lam_pair, held = best
    x, names = features(codes, ks)
    pen, use = _penalty(names, lam, lam_pair)
    w = np.zeros(len(names))
    w[use] = _ridge(x[:, use], y, pen)
    return names, w, {"kinds": list(ks), "ridge": lam, "ridge_pair": lam_pair, "cv_rmse_ms": rmse,
                      "out_of_fold": held}


def fit_table(csv_path: Path, column: str, train: int = 1000, seed: int = 0,
              kinds: Sequence[str] = DEFAULT_KINDS, device: Optional[str] = None) -> Tuple[dict, CellLatency]:
    """Fit a table from ``column`` of ``csv_path``; returns (the LUT JSON dict, its model)."""
    bad = [k for k in kinds if k not in FEATURE_KINDS]
    if bad or "op" not in kinds:
        raise BadInput(f"--features {','.join(kinds)}: must include 'op' and only {', '.join(FEATURE_KINDS)}")
    codes, y = read_csv(csv_path, column)
    parts = split(len(y), train, seed)
    names, w, ridge = fit_weights(codes[parts["train"]], y[parts["train"]], kinds, seed)
    kinds, oof = ridge.pop("kinds"), ridge.pop("out_of_fold")
    device = device or column.removesuffix("_ms")
    csv_path = Path(csv_path)
    provenance = f"fitted from {train} networks of {csv_path.name}, column {column}"
    # a linear model can go below zero on cells far from the training rows (the Pi 4's disconnected cells reached
    # -11 ms): predictions are floored at the smallest latency measured in training
    floor = float(y[parts["train"]].min())
    model = CellLatency.from_weights(names, w, kinds, name=f"{device}:latency", info={"provenance": provenance},
                                     floor=floor)
    pred = model.predict_codes(codes)
    cal, test = parts["train"], parts["test"]
    cal_pred = np.maximum(oof, floor)  # as the table itself is floored
    linked = connected(codes[test])
    validation = {
        "train": metrics(pred[parts["train"]], y[parts["train"]]),
        "held_out": metrics(pred[test], y[test]),
        # relative errors over the cells with an input-to-output path: a runtime may drop the computation of the
        # others (the Pi 4 measures some at 0.011 ms), where a few-ms prediction is a 10^4 % error that swamps MAPE
        "held_out_connected": metrics(pred[test][linked], y[test][linked]),
        "held_out_disconnected": {"n": int((~linked).sum()),
                                  "measured_ms": [float(y[test][~linked].min()), float(y[test][~linked].max())]
                                  if (~linked).any() else []},
        # the training rows' out-of-fold predictions (module docstring): the margin reads no held-out row
        "calibration": {"n": int(len(cal)), "source": "out-of-fold predictions of the training rows (5-fold CV)",
                        "predicted_ms": [round(float(v), 6) for v in cal_pred],
                        "measured_ms": [round(float(v), 6) for v in y[cal]],
                        # which networks they are (CellArch.index): lets a search rank them by its objective
                        "cells": [CellArch(tuple(c)).index for c in codes[cal]]},
    }
    digest = hashlib.sha256(csv_path.read_bytes()).hexdigest()[:16]
    data = {
        "schema_version": SCHEMA_VERSION, "kind": "fitted",
        "space": {"name": NB201.name, "hash": NB201.hash},
        "device": {"name": device, "fingerprint": {"source": "measured elsewhere; see provenance"}},
        "runtime": {"name": "unknown"}, "batch": 1, "method": {"fit": "ridge least squares", **ridge},
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "tool_version": __version__,
        "provenance": provenance,
        "source": {"file": csv_path.name, "sha256_16": digest, "column": column, "rows": int(len(y))},
        "split": {"seed": seed, "train": int(train), "test": int(len(test)), "rule": "profiler.fit.split",
                  "calibration": "out-of-fold on the training rows"},
        "model": {"kinds": list(kinds), "selected_by": "5-fold CV on the training rows", "names": names, "weights": [float(v) for v in w], "floor_ms": floor},
        "entries": {}, "calibration": None, "validation": validation,
    }
    return data, model


def load_fitted(data: dict) -> CellLatency:
    """The model of a fitted LUT's JSON dict (``Lut.latency_model`` builds the same)."""
    return Lut(data).latency_model()


def import_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="profile import", description="Fit a NB201 latency table from whole-network "
                                "measurements made elsewhere (a CSV of arch strings and latencies) and write it as a "
                                "LUT with its held-out validation report. The last line printed is its path.")
    p.add_argument("csv", metavar="CSV", help="CSV (or .csv.gz) with an 'arch' column of NB201 arch strings")
    p.add_argument("--column", required=True, help="latency column in ms, e.g. raspi4_ms")
    p.add_argument("--device", help="device name for the LUT (default: the column without '_ms')")
    p.add_argument("--space", default="nb201", help="search space (only nb201 is fitted from networks)")
    p.add_argument("--train", type=int, default=1000, help="networks to fit on (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--features", default=",".join(DEFAULT_KINDS),
                   help=f"terms the model may use, from {','.join(FEATURE_KINDS)} (default: all); 5-fold CV on the "
                   "training rows keeps the combination and ridge strengths with the least error")
    p.add_argument("--out", default="luts", metavar="DIR", help="LUT root directory (default: luts)")
    p.add_argument("--traceback", action="store_true")
    return p


def held_out_line(validation: dict) -> str:
    """The validation report in one line: R² and ratio over every held-out network, relative errors over the
    connected ones (the disconnected cells are counted and their measured range shown)."""
    h, c = validation["held_out"], validation.get("held_out_connected", validation["held_out"])
    d = validation.get("held_out_disconnected", {"n": 0})
    line = (f"held-out R² {h['r2']:.4f}, ratio {h['ratio']:.4f} on {h['n']} networks; MAPE {c['mape_pct']:.2f} %, "
            f"±5 % {c['within_5_pct']:.1f} %, ±10 % {c['within_10_pct']:.1f} % on the {c['n']} connected ones")
    if d["n"]:
        lo, hi = d["measured_ms"]
        line += (f" ({d['n']} cells without an input-to-output path, measured {lo:.3g}-{hi:.3g} ms, left out of the "
                 "relative errors: a runtime may drop their computation)")
    return line


def run_import(args) -> int:
    if args.space != NB201.name:
        raise BadInput(f"--space {args.space!r}: fitting from whole networks is implemented for 'nb201' only")
    kinds = [k.strip() for k in args.features.split(",") if k.strip()]
    data, _ = fit_table(Path(args.csv), args.column, args.train, args.seed, kinds, args.device)
    stamp = data["created"].replace("-", "").replace(":", "")
    path = Path(args.out) / data["device"]["name"] / NB201.name / f"{stamp}-fitted-{args.column}.json"
    atomic_write_json(path, data)
    print(f"{data['provenance']}: {held_out_line(data['validation'])}", file=sys.stderr)
    print(path)
    return 0
