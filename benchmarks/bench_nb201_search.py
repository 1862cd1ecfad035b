"""Exact search on the NB201 accuracy surrogate under a real device's latency bound, judged by the table (issue 15).

The player: an accuracy surrogate fitted on K architectures sampled from the table (their CIFAR-10 accuracies only)
and a latency model: (a) the exact measured column (the issue's scale reference: only the surrogate errs), (b) a
per-(edge, op) least-squares table fitted on 800 other sampled architectures, (c) the same with a split-conformal
margin on measured/predicted computed on 200 further ones. The search enumerates all 15,625 cells (exact on the
surrogate). The judge: the measured column decides feasibility; the true accuracy of the found cell is compared with
the best cell feasible by measured latency. Per device: targets at the 10/25/50/75th percentiles of its column.

    .venv/bin/python benchmarks/bench_nb201_search.py [--quick] [--k 200] [--samplings 5]

Needs shared/data/nb201_accuracy_latency.csv.gz beside the repository (exit status 2 with one line if absent).

Writes benchmarks/out/bench_nb201_search.json and prints the tables recorded in docs/BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import save_result  # noqa: E402

from search.nb201_surrogate import (SurrogateConfig, best_feasible, fit_surrogate,  # noqa: E402
                                    onehot_pairs_ridge)
from tests.nb201_table import load_table  # noqa: E402
from profiler.conformal import tightened_target  # noqa: E402
from profiler.fit import fit_weights  # noqa: E402
from profiler.nb201_model import CellLatency  # noqa: E402

OUT = Path(__file__).parent / "out"
DEVICES = ("raspi4_ms", "pixel3_ms", "gold_6226_ms", "samsung_a50_ms")
PERCENTILES = (10, 25, 50, 75)
N_LAT_FIT, N_LAT_CAL = 800, 200  # the latency table's training split: fit, conformal calibration
CONNAS_GAPS = "0.14-1.08 % (CONNAS on NATS-Bench topology, as reported)"


def fit_table(archs: np.ndarray, latency: np.ndarray):
    """The latency table ``profile import`` fits (profiler/fit.py: ridge over the CV-chosen terms) on these rows."""
    names, w, info = fit_weights(archs, latency)
    return CellLatency.from_weights(names, w, info["kinds"])


def run(k: int, samplings: int, confidence: float, config: SurrogateConfig) -> dict:
    archs, cols = load_table()
    acc = cols["cifar10_acc"]
    runs, fits = [], []
    for s in range(samplings):
        perm = np.random.default_rng(s).permutation(len(archs))
        train, lat_fit = perm[:k], perm[k:k + N_LAT_FIT]
        lat_cal = perm[k + N_LAT_FIT:k + N_LAT_FIT + N_LAT_CAL]
        t0 = time.perf_counter()
        surrogates = {"ensemble": fit_surrogate(archs[train], acc[train], config, seed=s),
                      "ridge-pairs": onehot_pairs_ridge(archs[train], acc[train])}
        fit_s = time.perf_counter() - t0
        rest = np.setdiff1d(np.arange(len(archs)), train)
        from scipy.stats import kendalltau
        scores = {name: sur.predict_all() for name, sur in surrogates.items()}
        fits.append({"sampling": s, "fit_s": fit_s, "info": surrogates["ensemble"].info,
                     **{f"heldout_tau_{n}": float(kendalltau(sc[rest], acc[rest])[0]) for n, sc in scores.items()}})
        print(f"sampling {s}: fit {fit_s:.0f} s, " + ", ".join(
            f"{key} {val:.3f}" for key, val in fits[-1].items() if key.startswith("heldout")), flush=True)
        for dev in DEVICES:
            measured = cols[dev]
            pred = fit_table(archs[lat_fit], measured[lat_fit]).predict_codes(archs)
            for pct in PERCENTILES:
                target = float(np.percentile(measured, pct))
                # search --confidence's margin (profiler/conformal.py) from the calibration split
                q = tightened_target(target, pred[lat_cal], measured[lat_cal], confidence)["margin"]
                models = {"measured": measured, "table": pred, "table+margin": pred * q}
                best = float(acc[measured <= target].max())
                for name, sc in scores.items():
                    for mode, lat in models.items():
                        i = best_feasible(sc, lat, target)
                        found = i is not None
                        runs.append({"sampling": s, "device": dev, "percentile": pct, "target_ms": target,
                                     "surrogate": name, "latency": mode, "margin": q if mode == "table+margin" else 1.0,
                                     "found": found, "feasible": bool(found and measured[i] <= target),
                                     "acc": float(acc[i]) if found else float("nan"), "best_acc": best,
                                     "gap": best - float(acc[i]) if found else float("nan"),
                                     "measured_ms": float(measured[i]) if found else float("nan")})
    return {"k": k, "samplings": samplings, "confidence": confidence, "config": config.__dict__, "fits": fits,
            "runs": runs, "connas_reported": CONNAS_GAPS}


def summarize(runs: list, by: str = "device") -> list:
    """Rows per (surrogate, latency model, value of ``by`` or 'all'): feasible rate, mean true acc, mean gaps."""
    out = []
    keys = sorted({(r["surrogate"], r["latency"]) for r in runs}, key=lambda kv: (kv[0] != "ensemble", kv))
    values = list(dict.fromkeys(r[by] for r in runs))  # in run order: DEVICES, PERCENTILES
    for sur, mode in keys:
        for val in (*values, "all"):
            sel = [r for r in runs if r["surrogate"] == sur and r["latency"] == mode and val in ("all", r[by])]
            feas = [r for r in sel if r["feasible"]]
            out.append({"surrogate": sur, "latency": mode, by: val, "n": len(sel),
                        "feasible": len(feas) / len(sel), "acc": float(np.nanmean([r["acc"] for r in sel])),
                        "gap": float(np.nanmean([r["gap"] for r in sel])),
                        "max_gap": float(np.nanmax([r["gap"] for r in sel])),
                        "gap_feasible": float(np.mean([r["gap"] for r in feas])) if feas else float("nan"),
                        "margin": float(np.mean([r["margin"] for r in sel]))})
    return out


def print_table(rows: list, by: str) -> None:
    print(f"| surrogate | latency model | {by} | measured-feasible | true acc | gap | max gap | gap (feasible) "
          "| margin |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['surrogate']} | {row['latency']} | {row[by]} | {row['feasible']:.0%} | {row['acc']:.2f} "
              f"| {row['gap']:.2f} | {row['max_gap']:.2f} | {row['gap_feasible']:.2f} | {row['margin']:.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=200, help="architectures whose accuracy the surrogate reads")
    ap.add_argument("--samplings", type=int, default=5, help="independent samplings of the K rows")
    ap.add_argument("--confidence", type=float, default=0.95)
    ap.add_argument("--quick", action="store_true", help="2 samplings, no cross-validation, smaller ensemble")
    ap.add_argument("--out", type=Path, default=OUT / "bench_nb201_search.json")
    args = ap.parse_args(argv)
    config = SurrogateConfig()
    if args.quick:
        args.samplings = min(args.samplings, 2)
        config = SurrogateConfig(n_trees_models=2, n_mlps=1, cv_folds=0)
    try:
        result = run(args.k, args.samplings, args.confidence, config)
    except FileNotFoundError as exc:
        print(f"bench_nb201_search: {exc}", file=sys.stderr)
        return 2
    result["summary"] = summarize(result["runs"])
    result["summary_by_percentile"] = summarize(result["runs"], by="percentile")
    print(f"\nK={args.k}, {args.samplings} samplings, confidence {args.confidence}; gaps in points; "
          f"CONNAS reports {CONNAS_GAPS}")
    print_table(result["summary"], "device")
    print()
    print_table([r for r in result["summary_by_percentile"] if r["surrogate"] == "ensemble"], "percentile")
    return save_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
