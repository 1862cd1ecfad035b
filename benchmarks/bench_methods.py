"""Issue 18: which latency do the agent's timing methods measure? One run, passes alternating.

    python benchmarks/bench_methods.py [--nets 30] [--cycles 3] [--out benchmarks/out/bench_methods.json]

The same networks are timed by
  (a) an independent plain warm loop (benchmarks/plain_loop.py: each network alone, 1 thread, one pinned core, 20
      warm-up calls, then >= 40 calls over >= 1 s, median) -- the steady state a deployed network sees. One process
      of it reads a network 4-9 % (CV) apart from the next process here, so each pass runs ``--plain-processes`` of
      them, every one over all networks in its own order, and takes the median per network. With 3 a pass the plain
      values still moved 4.2 % per network from one run to the next and capped R² near 0.985; with 10 (the default
      since 2026-11-30, 25 minutes a run) R² was 0.994 (docs/BENCHMARKS.md, issue 18);
  (b) the agent, ``interleaved`` (one call per network per round),
  (c) the agent, ``steady`` (bursts of consecutive calls, first calls dropped),
and every LUT entry (blocks + boundary pairs) is re-measured in the same run, (d) ``steady`` and (e)
``interleaved``, so the networks' plain loop times can be predicted from tables measured in the same minutes (eq. 3
with the boundary correction fitted from that table's pairs). Each cycle runs (a)-(e) once, in an order rotated by
one each cycle, so host drift hits all. Reports per-network ratios to the plain loop and their medians, overall and
per cycle, and the prediction metrics of both tables.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks._common import save_result  # noqa: E402
from profiler.devices import LOCAL  # noqa: E402
from profiler.export import export_arch  # noqa: E402
from profiler.lut import Lut, latest  # noqa: E402
from profiler.runner import Method, job_entries, measure, pool_parts  # noqa: E402
from profiler.space import HARDCORE  # noqa: E402
from profiler.validate import metrics, predictor, spread_sample  # noqa: E402


def plain_pass(paths, seed, processes):
    """Per network, the median over ``processes`` fresh plain-loop processes, each over all networks in its order."""
    runs = []
    for k in range(processes):
        order = np.random.default_rng([seed, k]).permutation(len(paths))
        r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "plain_loop.py"),
                            *[str(paths[i]) for i in order]], capture_output=True, text=True, check=True)
        got = {json.loads(line)["model"]: json.loads(line)["median_ms"] for line in r.stdout.splitlines()}
        runs.append([got[str(p)] for p in paths])
    return [float(v) for v in np.median(np.array(runs), axis=0)]


def loadavg():
    import os

    return [round(v, 2) for v in os.getloadavg()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nets", type=int, default=30)
    ap.add_argument("--cycles", type=int, default=3)
    ap.add_argument("--plain-processes", type=int, default=10, help="plain-loop processes per pass")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--processes", type=int, default=2, help="agent workers per pass")
    ap.add_argument("--steady-rounds", type=int, default=4, help="bursts per worker per pass (steady)")
    ap.add_argument("--interleaved-rounds", type=int, default=20, help="calls per worker per pass (interleaved)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_methods.json"))
    args = ap.parse_args()
    lut_path = latest(ROOT / "luts", "local", HARDCORE)
    archs = spread_sample(HARDCORE, predictor(Lut.load(lut_path), calibrated=False), args.nets, args.seed)
    paths = [export_arch(a)[0] for a in archs]
    nets = [(f"net:{a}", a, None) for a in archs]
    p = args.processes
    methods = {
        "interleaved": Method.preset("interleaved", processes=p, max_processes=p, rounds=args.interleaved_rounds),
        "steady": Method.preset("steady", processes=p, max_processes=p, rounds=args.steady_rounds),
    }
    table = job_entries(HARDCORE, methods["steady"])
    passes = ["plain", "interleaved", "steady", "blocks steady", "blocks interleaved"]
    plain, parts, log = [], {m: [] for m in methods}, []
    blocks = {m: {} for m in methods}
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for c in range(args.cycles):
            r = c % len(passes)
            for name in passes[r:] + passes[:r]:
                t0, load = time.monotonic(), loadavg()
                if name == "plain":
                    plain.append(plain_pass(paths, args.seed + c, args.plain_processes))
                elif name.startswith("blocks"):
                    mode = name.split()[1]
                    got, _, _ = measure(LOCAL, LOCAL.runtime_settings(), 1, replace(methods[mode], seed=c), table,
                                        Path(tmp) / f"blocks-{mode}{c}.jsonl", progress=False)
                    for k, v in got.items():
                        blocks[mode].setdefault(k, []).append(v)
                else:
                    got, _, _ = measure(LOCAL, LOCAL.runtime_settings(), 1, replace(methods[name], seed=c), nets,
                                        Path(tmp) / f"{name}{c}.jsonl", progress=False)
                    parts[name].append([got[k]["median_ms"] for k, _, _ in nets])
                log.append({"cycle": c, "pass": name, "wall_s": round(time.monotonic() - t0, 1), "loadavg": load})
                print(f"cycle {c + 1}/{args.cycles} {name}: {log[-1]['wall_s']}s, load {load}", flush=True)
            # after every cycle, what was measured so far (a run cut short keeps its complete cycles)
            partial = {"archs": [str(a) for a in archs], "plain": plain, "parts": parts, "passes": log,
                       "blocks_medians": {m: {k: [p["median_ms"] for p in v] for k, v in b.items()}
                                          for m, b in blocks.items()}}
            Path(args.out).with_suffix(".partial.json").write_text(json.dumps(partial, default=float))
    plain_med = np.median(np.array(plain), axis=0)  # per network, median over the cycles' plain loops
    res = {"nets": len(archs), "cycles": args.cycles, "lut_for_sampling": str(lut_path), "passes": log,
           "wall_s": round(time.monotonic() - t_start, 1), "methods": {k: asdict(v) for k, v in methods.items()},
           "networks": [{"arch": str(a), "plain_ms": float(pm)} for a, pm in zip(archs, plain_med)]}
    for name in methods:
        vals = np.median(np.array(parts[name]), axis=0)
        ratios = vals / plain_med
        per_cycle = [float(np.median(np.array(parts[name][c]) / np.array(plain[c]))) for c in range(args.cycles)]
        res[name] = {"median_ratio_to_plain": float(np.median(ratios)), "min_ratio": float(ratios.min()),
                     "max_ratio": float(ratios.max()), "per_cycle_median_ratio": per_cycle}
        for net, v in zip(res["networks"], vals):
            net[f"{name}_ms"] = float(v)
    res["steady_vs_interleaved_median"] = float(np.median(
        np.array([n["steady_ms"] / n["interleaved_ms"] for n in res["networks"]])))
    res["steady_vs_interleaved_per_cycle"] = [float(np.median(np.array(parts["steady"][c]) /
                                                             np.array(parts["interleaved"][c])))
                                              for c in range(args.cycles)]
    # (d), (e): the whole table re-measured in this run, each mode, predicts the plain loop and the agent's values
    for mode in methods:
        pooled = {k: pool_parts(k, v, methods[mode]) for k, v in blocks[mode].items()}
        same = Lut.new(HARDCORE, "local", {}, LOCAL.runtime_settings(), 1, asdict(methods[mode]), pooled)
        pred = [predictor(same)(a) for a in archs]
        res[f"boundaries_{mode}"] = same.data["boundaries"]
        res[f"predict_plain_from_same_run_{mode}_table"] = {k: v for k, v in metrics(pred, plain_med).items()
                                                            if k != "worst_index"}
        for target in methods:
            res[f"predict_{target}_from_same_run_{mode}_table"] = {
                k: v for k, v in metrics(pred, [n[f"{target}_ms"] for n in res["networks"]]).items()
                if k != "worst_index"}
        for net, pr in zip(res["networks"], pred):
            net[f"predicted_same_run_{mode}_ms"] = pr
    for k in ("interleaved", "steady"):
        print(f"{k:<12} / plain loop: median {res[k]['median_ratio_to_plain']:.4f} "
              f"(per cycle {', '.join(f'{v:.4f}' for v in res[k]['per_cycle_median_ratio'])}; "
              f"range {res[k]['min_ratio']:.3f}-{res[k]['max_ratio']:.3f})")
    print(f"steady / interleaved: median {res['steady_vs_interleaved_median']:.4f} (per cycle "
          f"{', '.join(f'{v:.4f}' for v in res['steady_vs_interleaved_per_cycle'])})")
    for mode in methods:
        for target in ("plain", *methods):
            m = res[f"predict_{target}_from_same_run_{mode}_table"]
            print(f"{target:<12} predicted from the same-run {mode:<11} table: R² {m['r2']:.4f}, ratio "
                  f"{m['ratio']:.4f}, ±5 % {m['within_5_pct']:.0f} %, MAPE {m['mape_pct']:.2f} %")
    return save_result(args.out, res)


if __name__ == "__main__":
    sys.exit(main())
