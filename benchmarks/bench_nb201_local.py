"""Issue 14: a local NB201 LUT profiled, then validated on random NB201 networks built by the project's torch code.

    python benchmarks/bench_nb201_local.py [--n 50] [--processes 8] [--rounds 20] [--out benchmarks/out]

1. ``profile`` of the NB201 pieces on ``local`` (writes luts/local/nb201/...).
2. ``n`` random networks measured in alternating passes with the pieces re-measured (same-run table): R², ratio,
   ±5/±10 % of the stored LUT's prediction and of the same-run prediction. Writes the report and a plot.
"""
import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import save_result  # noqa: E402
from profiler.devices import LOCAL  # noqa: E402
from profiler.lut import Lut  # noqa: E402
from profiler.nb201 import NB201, profile_entries  # noqa: E402
from profiler.nb201_validate import validate_nb201  # noqa: E402
from profiler.runner import Method, profile  # noqa: E402
from profiler.report import plot  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--processes", type=int, default=8)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--cycles", type=int, default=4)
    p.add_argument("--mode", default="interleaved", choices=("interleaved", "steady"),
                   help="timing mode of the pieces and networks (profiler.method.Method)")
    p.add_argument("--luts", default=str(ROOT / "luts"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    args = p.parse_args(argv)
    dev = LOCAL
    runtime = dev.runtime_settings()
    method = Method(mode=args.mode, processes=args.processes, rounds=args.rounds, max_processes=args.processes)
    t0 = time.monotonic()
    path, timing = profile(dev, NB201, runtime, 1, method, Path(args.luts), entries=profile_entries(NB201))
    print(f"profiled {path} in {time.monotonic() - t0:.0f}s", flush=True)
    lut = Lut(Lut.load(path).data, path)
    report = validate_nb201(dev, runtime, 1, replace(method, processes=args.processes * args.cycles),
                            Path(args.luts), n=args.n, seed=args.seed, cycles=args.cycles, lut=lut)
    report["profile_timing_s"] = timing
    report["wall_s"] = time.monotonic() - t0
    nets = report["networks"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(out / "nb201-local-validate.png", [r["predicted_ms"] for r in nets], [r["measured_ms"] for r in nets],
         f"NB201 local: {len(nets)} random networks", same_run=[r["same_run_ms"] for r in nets])
    for k in ("stored", "same_run"):
        m = report[k]
        print(f"{k}: R2 {m['r2']:.4f} ratio {m['ratio']:.4f} MAPE {m['mape_pct']:.2f}% "
              f"within5 {m['within_5_pct']:.0f}% within10 {m['within_10_pct']:.0f}%")
    return save_result(out / "nb201-local-validate.json", report)


if __name__ == "__main__":
    sys.exit(main())
