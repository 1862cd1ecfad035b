"""Issue 19: every searcher's gap to the exact constrained optimum, today's code against this checkout, one run.

Problems: random separable-bilinear objectives (``search.exact.SeparableObjective``, μ = 0: per config a value shared
by every slot plus per-slot noise, deeper stages better) on the committed 10:11 local LUT, each at one target from a
spread over the binding range (5 / 15 / 30 / 45 / 60 % of the latency range, in turn). The exact optimum comes from
the MILP (``exact_optimum``) and is checked against ``--algo exact`` (Pareto composition); it is never shown to the
searchers, which see the objective as a plain function. The cases run in a worker process per code tree, both at
once (they share the host's load): this checkout on every case, and today's searchers on the first
``--baseline-cases`` (``--baseline DIR``; default: ``git archive`` of the ``main`` branch into a temporary folder).

    nice -n 19 .venv/bin/python benchmarks/bench_exact_gap.py [--quick] [--cases 30] [--baseline DIR]

Writes benchmarks/out/bench_exact_gap.json.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LUT = "luts/local/hardcore-mbv3/20261123T101129Z-onnxruntime-t1-b1.json"
FRACTIONS = [0.05, 0.15, 0.3, 0.45, 0.6]
SEARCHERS = {"bcsfw": {"steps": 300}, "connas": {"steps": 300}, "dca": {"steps": 300},
             "hypernet": {"steps": 150, "batch": 8}}
OUT = Path(__file__).parent / "out" / "bench_exact_gap.json"


def make_case(i: int):
    """(A, B, fraction) of case i: the objective's per-(stage, slot, config) and per-(stage, depth) costs."""
    rng = np.random.default_rng(19_000 + i)
    quality = rng.normal(0, 1, 12)
    A = -(quality + 0.5 * rng.normal(0, 1, (5, 4, 12)))
    B = -np.sort(rng.uniform(0, 2, (5, 3)), axis=1)
    return A, B, FRACTIONS[i % len(FRACTIONS)]


def worker(cases: int, out: str) -> int:
    """Run every searcher on every case with the code on sys.path; write archs and times as JSON."""
    sys.path.insert(0, os.getcwd())
    from profiler.lut import Lut
    from profiler.space import HARDCORE
    from search.exact import SeparableObjective
    try:  # the eq. (3) model moved from search/ to profiler/ (issue 12): a baseline tree may have either
        from profiler.model import LinearResource
    except ImportError:
        from search.latency import LinearResource
    from search.problem import InfeasibleResultWarning, solve

    lat = LinearResource.from_table(HARDCORE, Lut.load(ROOT / LUT).block_table())
    rows = []
    for i in range(cases):
        A, B, frac = make_case(i)
        obj = SeparableObjective(HARDCORE, A, B)
        calls = [0]

        def f(alpha, beta, obj=obj):
            calls[0] += 1
            return obj(alpha, beta)

        T = lat.min_value() + frac * (lat.max_value() - lat.min_value())
        for algo, kw in SEARCHERS.items():
            kw = dict(kw)
            steps = kw.pop("steps")
            c0, t0 = calls[0], time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InfeasibleResultWarning)
                r = solve(lat, T, f, algo=algo, steps=steps, seed=0, **kw)
            rows.append({"case": i, "algo": algo, "target": T, "arch": str(r.arch), "feasible": bool(r.feasible),
                         "wall_s": time.perf_counter() - t0, "calls": calls[0] - c0,
                         "polish_evals": r.info.get("polish_evals")})
            print(f"{os.getcwd()} case {i} {algo}: {rows[-1]['wall_s']:.2f} s", file=sys.stderr, flush=True)
    Path(out).write_text(json.dumps(rows))
    return 0


def start_tree(tree: Path, cases: int, tmp: Path, name: str):
    out = tmp / f"rows-{name}.json"
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", "--cases", str(cases),
                             "--rows", str(out)], cwd=tree, env=env)
    return proc, out


def run_trees(trees: dict, tmp: Path) -> dict:
    """Every tree (name -> (path, cases)) at once, so that they share whatever load the host has."""
    started = {k: start_tree(t, n, tmp, k) for k, (t, n) in trees.items()}
    for k, (proc, _) in started.items():
        if proc.wait() != 0:
            raise SystemExit(f"the {k} worker failed (exit {proc.returncode})")
    return {k: json.loads(out.read_text()) for k, (_, out) in started.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="5 cases")
    p.add_argument("--cases", type=int, default=30)
    p.add_argument("--baseline-cases", type=int, default=10, help="today's code runs the first N cases only "
                   "(its time per solve and its gaps for reference; default 10)")
    p.add_argument("--baseline", help="code tree of today's searchers (default: git archive of main)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rows", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    cases = 5 if args.quick else args.cases
    if args.worker:
        return worker(cases, args.rows)
    sys.path.insert(0, str(ROOT))
    from _common import save_result
    from profiler.lut import Lut
    from profiler.space import Arch, HARDCORE
    from profiler.model import LinearResource
    from search.exact import SeparableObjective, exact_optimum
    from search.problem import solve

    lat = LinearResource.from_table(HARDCORE, Lut.load(ROOT / LUT).block_table())
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = Path(args.baseline) if args.baseline else tmp / "main"
        if not args.baseline:
            base.mkdir()
            tar = subprocess.run(["git", "-C", str(ROOT), "archive", "main"], check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(base)], input=tar, check=True)
        t0 = time.perf_counter()
        rows = run_trees({"today": (base, min(cases, args.baseline_cases)), "new": (ROOT, cases)}, tmp)
    exact_rows, optima = [], {}
    for i in range(cases):
        A, B, frac = make_case(i)
        obj = SeparableObjective(HARDCORE, A, B)
        T = lat.min_value() + frac * (lat.max_value() - lat.min_value())
        arch, f_star = exact_optimum(obj, [(lat, T)])
        t1 = time.perf_counter()
        r = solve(lat, T, obj, algo="exact")
        exact_rows.append({"case": i, "target": T, "milp": f_star, "pareto": obj.value_arch(r.arch),
                           "pareto_s": time.perf_counter() - t1, "feasible": bool(r.feasible)})
        optima[i] = (obj, f_star)
    summary = {"exact": {"matches_milp": sum(abs(r["pareto"] - r["milp"]) <= 1e-9 * abs(r["milp"])
                                             for r in exact_rows),
                         "cases": cases, "mean_s": float(np.mean([r["pareto_s"] for r in exact_rows]))}}
    for code, rs in rows.items():
        for r in rs:
            obj, f_star = optima[r["case"]]
            r["gap_pct"] = 100 * (obj.value_arch(Arch.parse(r["arch"], HARDCORE)) - f_star) / abs(f_star)
        for algo in SEARCHERS:
            mine = [r for r in rs if r["algo"] == algo]
            gaps = [r["gap_pct"] for r in mine if r["feasible"]]
            summary[f"{algo} {code}"] = {
                "feasible": sum(r["feasible"] for r in mine), "cases": len(mine),
                "mean_gap_pct": float(np.mean(gaps)) if gaps else None,
                "worst_gap_pct": float(np.max(gaps)) if gaps else None,
                "mean_s": float(np.mean([r["wall_s"] for r in mine])),
                "mean_calls": float(np.mean([r["calls"] for r in mine]))}
    print(f"\n{'searcher':>16} {'feasible':>9} {'mean gap':>9} {'worst':>8} {'s/solve':>8} {'calls':>7}")
    print(f"{'exact (pareto)':>16} {summary['exact']['matches_milp']:>4}/{cases:<4} {'= MILP':>9} {'':>8} "
          f"{summary['exact']['mean_s']:8.3f}")
    for key, x in summary.items():
        if key == "exact":
            continue
        gap = f"{x['mean_gap_pct']:8.2f}%" if x["mean_gap_pct"] is not None else "        -"
        worst = f"{x['worst_gap_pct']:7.2f}%" if x["worst_gap_pct"] is not None else "       -"
        print(f"{key:>16} {x['feasible']:>4}/{x['cases']:<4} {gap} {worst} {x['mean_s']:8.3f} {x['mean_calls']:7.0f}")
    result = {"lut": LUT, "cases": cases, "fractions": FRACTIONS, "searchers": SEARCHERS, "exact": exact_rows,
              "rows": rows, "summary": summary, "total_s": time.perf_counter() - t0}
    return save_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
