"""Does preparing the next worker ahead disturb the one that measures? (issue 18)

While a worker times its entries on its core, ``profile`` starts the next one on the device's other cores (process
start, imports, sessions, warm-up: ``Method.prepare_ahead``). On a 2-core VM the two cores share the L3 cache and
the memory bus, so that preparation could slow the measuring worker. One full profile, same run, alternating: the
next worker is prepared ahead only while an *even* worker measures, so even workers measure beside a preparation
and odd ones alone, interleaved over the whole run (host drift hits both alike). Per entry, the median of the even
workers' samples over that of the odd workers': overall, and over the first ``--early`` rounds of each worker,
when the preparation runs (it takes 1-2 s of a worker's ~5 s).

    taskset -c 0,1 .venv/bin/python benchmarks/bench_ahead.py [--out benchmarks/out/bench_ahead.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/bench_ahead.json"))
    ap.add_argument("--early", type=int, default=12, help="rounds of a worker counted as 'early'")
    ap.add_argument("--processes", type=int, default=20)
    args = ap.parse_args(argv)
    import tempfile

    from profiler import runner
    from profiler.devices import LOCAL
    from profiler.lut import Lut
    from profiler.method import Method
    from profiler.space import HARDCORE

    class EvenOnly(runner.Ahead):  # the next worker prepared only while an even one measures
        def wants(self, worker):
            return worker % 2 == 0

    runner.Ahead = EvenOnly
    # no top-ups: every entry has the same workers
    method = Method(processes=args.processes, rounds=40, max_processes=args.processes, prepare_ahead=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        path, timing = runner.profile(LOCAL, HARDCORE, {"name": "onnxruntime", "threads": 1}, 1, method, Path(tmp),
                                      progress=False)
        lut = Lut.load(path)
    wall = time.monotonic() - t0
    R = method.rounds
    whole, early, late = [], [], []
    for e in lut.entries.values():
        s = np.asarray(e["samples_ms"]).reshape(-1, R)
        ev, od = s[0::2], s[1::2]
        whole.append(np.median(ev) / np.median(od))
        early.append(np.median(ev[:, :args.early]) / np.median(od[:, :args.early]))
        late.append(np.median(ev[:, args.early:]) / np.median(od[:, args.early:]))
    res = {"wall_s": round(wall, 1), "split": timing.get("split"), "entries": len(whole), "early_rounds": args.early}
    for name, r in (("whole", whole), ("early", early), ("late", late)):
        r = np.asarray(r)
        res[name] = {"median": round(float(np.median(r)), 4), "mean": round(float(r.mean()), 4),
                     "q25": round(float(np.percentile(r, 25)), 4), "q75": round(float(np.percentile(r, 75)), 4),
                     "share_above_1": round(float((r > 1).mean()), 3)}
        print(f"even (beside a preparation) / odd (alone), {name:5s}: median {res[name]['median']:.4f}, IQR "
              f"{res[name]['q25']:.4f}-{res[name]['q75']:.4f}, {100 * res[name]['share_above_1']:.0f} % of entries > 1")
    print(f"wall {wall:.1f}s; held {timing['split'].get('held', 0)} of {timing['split']['processes']} processes")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
