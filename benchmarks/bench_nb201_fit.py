"""Issue 14: NB201 tables fitted from the real-device columns of the shared data, judged on held-out networks.

    python benchmarks/bench_nb201_fit.py [--data PATH] [--train 1000] [--seed 0] [--out benchmarks/out]

Per latency column: the additive table αᵀΘ alone and the CV-chosen model (op, live and used edges, pairs,
disconnected cells), both fitted on ``train`` networks; held-out R² and ratio on the test half of the rest, MAPE and
±5/±10 % on its connected networks (profiler/fit.py: a runtime may drop a disconnected cell's work). Then the
confidence margin (conformal, from the calibration half): for targets at the 25/50/75th latency percentile, the
share of test networks predicted under T' that measure under T, for 0.9/0.95/0.99.
"""
import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import save_result  # noqa: E402
from profiler.conformal import calibration_pairs, tightened_target  # noqa: E402
from profiler.fit import DEFAULT_KINDS, fit_table, read_csv, split  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    default = Path(os.environ.get("LUTNAS_SHARED_DATA") or ROOT.parent / "shared" / "data")
    p.add_argument("--data", default=str(default / "nb201_accuracy_latency.csv.gz"))
    p.add_argument("--train", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = p.parse_args(argv)
    header = Path(args.data)
    import gzip

    cols = [c for c in gzip.open(header, "rt").readline().strip().split(",") if c.endswith("_ms")]
    result = {"data": header.name, "train": args.train, "seed": args.seed, "columns": {}}
    for col in cols:
        t0 = time.monotonic()
        codes, y = read_csv(header, col)
        test = split(len(y), args.train, args.seed)["test"]
        row = {}
        for name, kinds in (("additive", ["op"]), ("chosen", list(DEFAULT_KINDS))):
            data, model = fit_table(header, col, args.train, args.seed, kinds)
            row[name] = {"held_out": data["validation"]["held_out"], "kinds": data["model"]["kinds"],
                         "ridge": data["method"], "held_out_connected": data["validation"]["held_out_connected"],
                         "held_out_disconnected": data["validation"]["held_out_disconnected"]}
        pc, mc, _ = calibration_pairs(data)
        pred, meas = model.predict_codes(codes[test]), y[test]
        conf = {}
        for c in (0.9, 0.95, 0.99):
            for pct in (25, 50, 75):
                target = float(np.percentile(y, pct))
                t = tightened_target(target, pc, mc, c)
                ok = pred <= t["searched_target"]
                near = np.argsort(np.abs(pred - t["searched_target"]))[:300]
                near = near[ok[near]]
                conf[f"{c}@p{pct}"] = {"margin": t["margin"], "share_all": float((meas[ok] <= target).mean()),
                                       "n_all": int(ok.sum()), "share_near": float((meas[near] <= target).mean()),
                                       "n_near": int(len(near))}
        row["confidence"] = conf
        row["wall_s"] = time.monotonic() - t0
        result["columns"][col] = row
        a, h = row["additive"]["held_out"], row["chosen"]["held_out"]
        c = row["chosen"]["held_out_connected"]
        worst = min(v["share_near"] - float(k.split("@")[0]) for k, v in conf.items())
        print(f"{col:18s} additive R2 {a['r2']:.4f} | chosen {'+'.join(row['chosen']['kinds'])}: R2 {h['r2']:.4f} "
              f"ratio {h['ratio']:.4f} | connected ({c['n']}): MAPE {c['mape_pct']:.2f} ±5 {c['within_5_pct']:.1f} "
              f"±10 {c['within_10_pct']:.1f} | worst near-bound share - confidence {worst:+.3f}", flush=True)
    return save_result(Path(args.out) / "nb201-fit.json", result)


if __name__ == "__main__":
    sys.exit(main())
