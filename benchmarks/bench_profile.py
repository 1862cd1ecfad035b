"""Issue 2 benchmarks: repeatability of the method and the cost of a full local LUT.

    python benchmarks/bench_profile.py [--nets 20] [--out benchmarks/out]

1. Two independent `profile --device local` runs (fresh processes, fresh runtime sessions) of the full LUT:
   wall time split (export / measurement / overhead), entries whose CI half-width exceeds 1 %, and the agreement of
   the two runs' medians (R², mean and max absolute drift).
2. N random whole networks measured twice, in two separate agent runs: the same agreement figures.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from profiler.devices import LOCAL  # noqa: E402
from profiler.lut import Lut  # noqa: E402
from profiler.runner import Method, measure  # noqa: E402
from profiler.space import random_arch  # noqa: E402


def agreement(a, b):
    a, b = np.asarray(a), np.asarray(b)
    signed = (b - a) / ((a + b) / 2) * 100
    drift = np.abs(signed)
    r2 = 1 - ((a - b) ** 2).sum() / ((a - a.mean()) ** 2).sum()
    return {"r2": float(r2), "mean_abs_drift_pct": float(drift.mean()), "max_abs_drift_pct": float(drift.max()),
            "median_abs_drift_pct": float(np.median(drift)),
            "mean_signed_drift_pct": float(signed.mean()),
            "mean_abs_drift_after_global_shift_pct": float(np.abs(signed - signed.mean()).mean())}


def profile_once(out):
    t = time.monotonic()
    r = subprocess.run([str(Path(sys.executable).parent / "profile"), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, check=True)
    wall = time.monotonic() - t
    split = r.stderr.strip().splitlines()[-1]
    return Lut.load(r.stdout.strip().splitlines()[-1]), wall, split


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = ap.parse_args()
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        runs = [profile_once(Path(tmp) / f"run{i}") for i in range(2)]
    keys = sorted(runs[0][0].entries)
    for i, (lut, wall, split) in enumerate(runs):
        ci = np.array([lut.entries[k]["ci95_ms"] / lut.entries[k]["median_ms"] for k in keys]) * 100
        res[f"profile_run{i + 1}"] = {"wall_s": round(wall, 1), "split": split, "entries": len(keys),
                                      "ci_over_1pct": int((ci > 1.0).sum()), "max_ci_pct": float(ci.max()),
                                      "samples_total": int(sum(lut.entries[k]["n"] for k in keys))}
    res["profile_agreement"] = agreement([runs[0][0].entries[k]["median_ms"] for k in keys],
                                         [runs[1][0].entries[k]["median_ms"] for k in keys])
    rng = np.random.default_rng(42)
    archs = [random_arch(rng) for _ in range(args.nets)]
    entries = [(f"net:{a}", a, None) for a in archs]
    meds = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(2):
            done, journal, _ = measure(LOCAL, LOCAL.runtime_settings(), 1, Method(), entries,
                                       Path(tmp) / f"j{i}.jsonl", progress=False)
            meds.append([done[k]["median_ms"] for k, _, _ in entries])
    res["networks_agreement"] = agreement(*meds)
    res["networks_range_ms"] = [float(min(meds[0])), float(max(meds[0]))]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_profile.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
