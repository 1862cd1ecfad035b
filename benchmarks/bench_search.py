"""Hard-constrained search core (HardCoRe-NAS, Nayman et al. 2021): BCSFW against penalties, projections, exact optima.

1. Fig. 5 toy (§4.2.3): min Σ (1 + ε_i) x_i² s.t. Σ x_i = 1, x ≥ 0 with noisy gradients — Frank-Wolfe on the simplex
   vs SGD on the penalised loss f + λ (Σ x − 1)² for several λ: gap to the optimum and constraint violation per step.
2. Table 2 shape: on the newest calibrated LUT under luts/local/ (synthetic FLOPs-based table if none), BCSFW for
   targets across the feasible range; the latency of its relaxed solution projected by argmax (eq. 12) vs by the
   feasible projection (eq. 13 + rounding), against the target.
3. Random cases: separable objectives (linear and quadratic) and targets across the range. BCSFW's constraint
   satisfaction rate and gap to the exact MILP optimum, the soft-penalty baseline's violation rate and gap at
   several λ, and the LP's share of a BCSFW step.

    nice -n 19 .venv/bin/python benchmarks/bench_search.py [--quick]

Writes benchmarks/out/bench_search.json and PNGs under benchmarks/out/.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from profiler.model import LinearResource, block_cost, flops_model  # noqa: E402
from profiler.space import HARDCORE  # noqa: E402
from search.exact import SeparableObjective, exact_optimum  # noqa: E402
from search.problem import InfeasibleResultWarning, Problem, solve  # noqa: E402
from search.projection import argmax_arch  # noqa: E402

OUT = Path(__file__).parent / "out"


def toy(n: int = 10, steps: int = 500, noise: float = 0.05, lams=(1.0, 10.0, 100.0), seed: int = 0) -> dict:
    """Fig. 5: FW vs penalised SGD on a strongly convex quadratic over the simplex, stochastic gradients."""
    rng = np.random.default_rng(seed)
    eps = rng.uniform(0.0, 1.0, n)
    h = 1.0 + eps
    f_star = 1.0 / np.sum(1.0 / h)  # x* ∝ 1/(1+ε_i)
    curves = {}
    x = np.full(n, 1.0 / n)
    fw_gap, fw_viol = [], []
    for t in range(steps):
        g = 2 * h * x + noise * rng.normal(size=n)
        xi = np.zeros(n)
        xi[np.argmin(g)] = 1.0  # the LP over the simplex: its best vertex
        x = x + 4.0 / (t + 5.0) * (xi - x)
        fw_gap.append(float(h @ x ** 2 - f_star))
        fw_viol.append(abs(float(x.sum() - 1.0)))
    curves["BCSFW"] = (fw_gap, fw_viol)
    for lam in lams:
        x = np.full(n, 1.0 / n)
        lr = 0.5 / (2 * h.max() + 2 * lam * n)  # stable step for the penalised quadratic
        gap, viol = [], []
        for t in range(steps):
            g = 2 * h * x + 2 * lam * (x.sum() - 1.0) + noise * rng.normal(size=n)
            x = np.clip(x - lr * g, 0.0, None)
            # the objective counted at x even off the constraint, as the penalty method sees it
            gap.append(float(h @ x ** 2 - f_star))
            viol.append(abs(float(x.sum() - 1.0)))
        curves[f"SGD λ={lam:g}"] = (gap, viol)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    for name, (gap, viol) in curves.items():
        ax[0].plot(np.abs(gap), label=name)
        ax[1].plot(np.maximum(viol, 1e-17), label=name)
    ax[0].set(yscale="log", xlabel="step", ylabel="|f(x) − f*|", title="objective")
    ax[1].set(yscale="log", xlabel="step", ylabel="|Σx − 1|", title="constraint violation")
    ax[0].legend()
    fig.tight_layout()
    fig.savefig(OUT / "search_toy_fig5.png", dpi=110)
    plt.close(fig)
    return {name: {"final_gap": gap[-1], "final_violation": viol[-1], "max_violation": max(viol)}
            for name, (gap, viol) in curves.items()}


def latency_model():
    """The newest calibrated LUT under luts/local (else the newest LUT), or a synthetic FLOPs-based table."""
    files = sorted(Path("luts/local").glob("*/*-cal-*.json")) or sorted(Path("luts/local").glob("*/*.json"))
    if files:
        from profiler.lut import Lut

        lut = Lut.load(files[-1])
        return lut.latency_model(name="latency"), str(files[-1])
    table = {str(b): 0.02 + block_cost(b)[1] / 1e8 for b in HARDCORE.unique_blocks()}
    return LinearResource.from_table(HARDCORE, table), "synthetic: 0.02 ms + MACs / 1e8 per block"


def table2(lat: LinearResource, n_targets: int, steps: int) -> dict:
    """Argmax vs feasible projection of the same BCSFW solution, with a capacity objective (max FLOPs)."""
    flops = flops_model(lat.space)
    scale = 1.0 / flops.max_value()

    def objective(alpha, beta):  # as the search CLI without a supernet: prefer capacity within the budget
        ga, gb = flops.grad(alpha, beta)
        return -float(flops.predict(alpha, beta)) * scale, -ga * scale, -gb * scale

    lo, hi = lat.min_value(), lat.max_value()
    rows = []
    for T in np.linspace(lo + 0.05 * (hi - lo), hi - 0.05 * (hi - lo), n_targets):
        r = solve(lat, T, objective, steps=steps, seed=0)
        rows.append({"target": float(T), "feasible_projection": r.predicted_ms,
                     "argmax_projection": lat.predict_arch(argmax_arch(lat.space, r.alpha, r.beta)),
                     "relaxed": r.trace[-1]["latency"]})
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["target"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(t, t, "k--", lw=1, label="target")
    ax.plot(t, [r["argmax_projection"] for r in rows], "o-", label="argmax projection (eq. 12)")
    ax.plot(t, [r["feasible_projection"] for r in rows], "s-", label="feasible projection (eq. 13)")
    ax.set(xlabel="target latency (ms)", ylabel="predicted latency of the result (ms)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "search_table2_projection.png", dpi=110)
    plt.close(fig)
    over = [r["argmax_projection"] > r["target"] * (1 + 1e-9) for r in rows]
    return {"rows": rows, "argmax_violations": int(sum(over)), "n": len(rows),
            "feasible_violations": int(sum(r["feasible_projection"] > r["target"] * (1 + 1e-9) for r in rows)),
            "argmax_mean_excess_pct": float(np.mean([100 * (r["argmax_projection"] / r["target"] - 1)
                                                     for r in rows])),
            "feasible_mean_utilisation_pct": float(np.mean([100 * r["feasible_projection"] / r["target"]
                                                            for r in rows]))}


def random_cases(lat: LinearResource, n: int, steps: int, lams, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    S, B, C, D = lat.theta.shape + (len(lat.space.depths),)
    lo, hi = lat.min_value(), lat.max_value()
    bc = {"ok": 0, "gaps": [], "lp_s": 0.0, "step_s": 0.0, "wall_s": 0.0}
    soft = {lam: {"ok": 0, "gaps": [], "excess": []} for lam in lams}
    exact_s = 0.0
    for i in range(n):
        mu = 0.0 if i % 2 == 0 else 1.0  # half linear, half with a convex quadratic term
        obj = SeparableObjective(lat.space, rng.normal(0, 1, (S, B, C)), rng.normal(0, 1, (S, D)), mu=mu,
                                 a0=rng.dirichlet(np.ones(C), size=(S, B)) if mu else None)
        T = lo + rng.uniform(0.02, 0.98) * (hi - lo)
        t0 = time.perf_counter()
        _, best = exact_optimum(obj, [(lat, T)])
        exact_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        r = solve(lat, T, obj, steps=steps, seed=i)
        bc["wall_s"] += time.perf_counter() - t0
        problem = Problem(lat.space, [(lat, T)], obj)
        bc["ok"] += problem.feasible_arch(r.arch) and all(row["latency"] <= T * (1 + 1e-9) for row in r.trace)
        bc["gaps"].append((obj.value_arch(r.arch) - best) / abs(best))
        bc["lp_s"] += r.info["lp_s"]
        bc["step_s"] += r.info["step_s"]
        for lam in lams:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InfeasibleResultWarning)
                s = solve(lat, T, obj, algo="soft", steps=steps, seed=i, lam=lam)
            soft[lam]["ok"] += s.feasible
            soft[lam]["excess"].append(max(0.0, s.predicted_ms / T - 1))
            if s.feasible:
                soft[lam]["gaps"].append((obj.value_arch(s.arch) - best) / abs(best))
    out = {"n": n, "steps": steps, "exact_mean_s": exact_s / n,
           "bcsfw": {"satisfaction_pct": 100 * bc["ok"] / n, "mean_gap_pct": 100 * float(np.mean(bc["gaps"])),
                     "median_gap_pct": 100 * float(np.median(bc["gaps"])),
                     "max_gap_pct": 100 * float(np.max(bc["gaps"])),
                     "lp_share_of_step_pct": 100 * bc["lp_s"] / bc["step_s"],
                     "mean_search_s": bc["wall_s"] / n}}
    for lam, d in soft.items():
        out[f"soft_lam{lam:g}"] = {"violation_pct": 100 * (1 - d["ok"] / n),
                                   "mean_excess_pct": 100 * float(np.mean(d["excess"])),
                                   "mean_gap_pct_when_feasible": (100 * float(np.mean(d["gaps"])) if d["gaps"]
                                                                  else None)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer cases and steps (well under a minute)")
    p.add_argument("--out", default=str(OUT / "bench_search.json"))
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    n, steps, n_targets = (20, 100, 6) if args.quick else (100, 200, 12)
    t0 = time.time()
    result = {"toy": toy()}
    print("toy (Fig. 5):", json.dumps(result["toy"], default=float))
    lat, source = latency_model()
    result["latency_model"] = {"source": source, "min_ms": lat.min_value(), "max_ms": lat.max_value()}
    print(f"latency model: {source}, range {lat.min_value():.3f}..{lat.max_value():.3f} ms")
    result["table2"] = table2(lat, n_targets, steps)
    t2 = {k: v for k, v in result["table2"].items() if k != "rows"}
    print("table 2:", json.dumps(t2, default=float))
    for r in result["table2"]["rows"]:
        print(f"  T {r['target']:7.3f}  argmax {r['argmax_projection']:7.3f}  feasible {r['feasible_projection']:7.3f}")
    result["random"] = random_cases(lat, n, steps, lams=(1.0, 10.0, 100.0, 1000.0))
    print("random cases:", json.dumps(result["random"], indent=1, default=float))
    result["wall_s"] = time.time() - t0
    out = Path(args.out)
    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=float))
    print(f"wrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
