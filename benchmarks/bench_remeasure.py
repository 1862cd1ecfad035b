"""How far a second measurement of the same network moves from the first: the basis of ``search --measured-margin``.

``search --confidence`` admits a network the table was fitted on by its measurement × R ≤ target (issue 15). On a
device such a network is judged by a later measurement, so R must cover how far that one moves. This benchmark
measures ``--n`` random NB201 networks in one session (fresh agent processes, the profile's method), waits
``--wait`` seconds, and measures them again in a second session, as a later ``validate`` or ``--verify-on`` would.
Per network it reports later / first: the median (the device's common drift between the sessions) and the 95th
percentile, raw and with the median divided out (what a network keeps of its own). A measured pick is one whose
first measurement happened to be low enough, so its ratio leans higher than a random network's: read the 95th
percentile as a floor for R, not a ceiling.

    .venv/bin/python benchmarks/bench_remeasure.py [--n 40] [--wait 120] [--seed 0]

Writes benchmarks/out/bench_remeasure.json (both sessions' medians and CIs per network).
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import save_result  # noqa: E402
from profiler.devices import LOCAL  # noqa: E402
from profiler.nb201 import network_entries, random_archs  # noqa: E402
from profiler.runner import Method, measure  # noqa: E402


def session(dev, runtime, method, archs, tmp: Path, name: str) -> dict:
    got, _, timing = measure(dev, runtime, 1, method, network_entries(archs), tmp / f"{name}.jsonl",
                                   label=f"remeasure {name}")
    return {a.key: got[a.key] for a in archs}, timing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=40, help="random NB201 networks")
    p.add_argument("--wait", type=float, default=120.0, help="seconds between the two sessions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "bench_remeasure.json")
    args = p.parse_args(argv)
    dev = LOCAL
    runtime = dev.runtime_settings()
    method = Method()  # what `profile` uses
    archs = random_archs(np.random.default_rng(args.seed), args.n)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        first, t_first = session(dev, runtime, method, archs, Path(tmp), "first")
        started = time.monotonic()
        time.sleep(max(0.0, args.wait))
        later, t_later = session(dev, runtime, method, archs, Path(tmp), "later")
    ratio = np.array([later[a.key]["median_ms"] / first[a.key]["median_ms"] for a in archs])
    drift = float(np.median(ratio))
    q = lambda x, p: float(np.percentile(x, p))  # noqa: E731
    result = {
        "device": dev.name, "runtime": runtime, "n": len(archs), "seed": args.seed, "wait_s": args.wait,
        "between_sessions_s": time.monotonic() - started, "wall_s": time.monotonic() - t0,
        "ratio_median": drift, "ratio_p95": q(ratio, 95), "ratio_max": float(ratio.max()),
        "ratio_over_drift_p95": q(ratio / drift, 95), "ratio_over_drift_p05": q(ratio / drift, 5),
        "share_over": {f"{r:g}": float(np.mean(ratio > r)) for r in (1.03, 1.05, 1.10, 1.20)},
        "timing": {"first": t_first, "later": t_later},
        "networks": [{"arch": str(a), "first_ms": first[a.key]["median_ms"], "first_ci95_ms": first[a.key]["ci95_ms"],
                      "later_ms": later[a.key]["median_ms"], "later_ci95_ms": later[a.key]["ci95_ms"]}
                     for a in archs],
    }
    print(f"{len(archs)} networks, sessions {result['between_sessions_s']:.0f} s apart: later/first median "
          f"{drift:.4f} (the device's drift), 95th percentile {result['ratio_p95']:.4f}, max {result['ratio_max']:.4f}; "
          f"over the drift: 5th-95th percentile {result['ratio_over_drift_p05']:.4f}-{result['ratio_over_drift_p95']:.4f}; "
          "share over R: " + ", ".join(f"{r} {v:.0%}" for r, v in result["share_over"].items()))
    return save_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
