"""Hard-constrained search core: BCSFW (HardCoRe Alg. 1), projection (eq. 13, Thm 3.1), exact optimum, soft baseline.

The latency model is synthetic (from FLOPs plus a per-block overhead), so no measured LUT is needed.
"""
import warnings
from itertools import product
from pathlib import Path

import numpy as np
import pytest

from profiler.lut import Lut
from profiler.model import LinearResource, flops_model
from profiler.space import HARDCORE, Arch, Space, Stage
from search.exact import SeparableObjective, exact_optimum, min_value, solve_milp
from search.problem import ALGOS, InfeasibleResultWarning, InfeasibleTarget, Problem, UnknownAlgo, solve
from search.projection import argmax_arch, fractional, lp_vertex, project
from tests.conftest import HI, LAT, LO, PARAMS, TABLE, objective, target  # noqa: F401

FLOPS = flops_model(HARDCORE)


def assert_trace_feasible(r, bounds):
    for row in r.trace:
        for name, bound in bounds.items():
            assert row[name] <= bound * (1 + 1e-9), (row["step"], name, row[name], bound)


@pytest.mark.parametrize("frac", [0.02, 0.3, 0.7])
def test_bcsfw_is_feasible_at_every_step_and_at_the_end(frac):
    T = target(frac)
    r = solve(LAT, T, objective(1), steps=60, seed=0)
    assert r.algo == "bcsfw" and r.feasible
    assert_trace_feasible(r, {"latency": T})
    assert r.predicted_ms == pytest.approx(LAT.predict_arch(r.arch)) and r.predicted_ms <= T
    assert len(r.arch.stages) == 5 and r.resources["latency"] == r.predicted_ms


def test_bcsfw_meets_several_bounds_at_once():
    T, p_max, f_max = target(0.6), 3.3e6, 230e6
    assert LAT.min_value() < T and PARAMS.min_value() < p_max and FLOPS.min_value() < f_max
    r = solve(LAT, T, objective(2), constraints=[(PARAMS, p_max), (FLOPS, f_max)], steps=60, seed=0)
    assert r.feasible
    assert_trace_feasible(r, {"latency": T, "params": p_max, "flops": f_max})
    assert PARAMS.predict_arch(r.arch) <= p_max and FLOPS.predict_arch(r.arch) <= f_max


def test_projection_vertex_is_sparse_theorem_3_1():
    rng = np.random.default_rng(3)
    for i in range(8):
        alpha = rng.dirichlet(np.ones(12) * 0.5, size=(5, 4))
        beta = rng.dirichlet(np.ones(3), size=5)
        T = float(LAT.predict(alpha, beta)) * rng.uniform(1.0, 1.1)  # (α, β) feasible, the bound near-active
        bounds = [(LAT, T)]
        a_v, b_v = lp_vertex(alpha, beta, bounds)
        assert fractional(a_v).sum() <= 1 and fractional(b_v).sum() <= 1  # one inequality: ≤ 1 group each
        assert LAT.predict(a_v, b_v) <= T * (1 + 1e-9)
        arch, info = project(HARDCORE, alpha, beta, bounds)
        assert LAT.predict_arch(arch) <= T * (1 + 1e-9) and info["path"].startswith("lp-vertex")


def test_argmax_projection_ignores_the_bound_but_feasible_projection_does_not():
    # α, β leaning towards big blocks with a bound only met thanks to their small mass on cheap ones
    alpha = np.full((5, 4, 12), 0.02)
    alpha[..., -1] = 1 - 0.02 * 11
    beta = np.tile([0.3, 0.3, 0.4], (5, 1))
    T = float(LAT.predict(alpha, beta))
    assert LAT.predict_arch(argmax_arch(HARDCORE, alpha, beta)) > T
    arch, _ = project(HARDCORE, alpha, beta, [(LAT, T)])
    assert LAT.predict_arch(arch) <= T


def test_infeasible_target_is_refused_with_the_minimum():
    with pytest.raises(InfeasibleTarget, match=r"target 1\.50 ms is below the minimum achievable latency "
                                               rf"{LO:.2f} ms of this space on this LUT") as e:
        solve(LAT, 1.5, objective(0))
    assert e.value.minimum == pytest.approx(LO)
    # each bound feasible alone, not together: "anti" is smallest exactly where latency is largest per block
    anti = LinearResource("anti", "", LAT.theta.max() - LAT.theta, 0.0, HARDCORE)
    with pytest.raises(InfeasibleTarget, match="cannot be met") as e:
        solve(LAT, LO * 1.01, objective(0), constraints=[(anti, anti.min_value() * 1.01)])
    assert e.value.minimum > LO * 1.01  # the smallest latency the other bound leaves


def test_same_seed_same_result():
    a = solve(LAT, target(0.4), objective(4), steps=40, seed=7)
    b = solve(LAT, target(0.4), objective(4), steps=40, seed=7)
    assert a.arch == b.arch and [r["block"] for r in a.trace[:-1]] == [r["block"] for r in b.trace[:-1]]
    np.testing.assert_array_equal(a.alpha, b.alpha)


def test_bcsfw_gap_to_the_exact_optimum_is_small():
    gaps = []
    for i, (frac, mu) in enumerate([(0.2, 0.0), (0.5, 0.0), (0.8, 0.0), (0.4, 1.0), (0.6, 1.0)]):
        obj = objective(10 + i, mu)
        T = target(frac)
        best_arch, best = exact_optimum(obj, [(LAT, T)])
        assert LAT.predict_arch(best_arch) <= T
        r = solve(LAT, T, obj, steps=150, seed=i)
        found = obj.value_arch(r.arch)
        assert found >= best - 1e-9  # the MILP is a true lower bound
        gaps.append((found - best) / abs(best))
    assert np.mean(gaps) < 0.05, gaps


def test_exact_milp_matches_brute_force_on_a_tiny_space():
    tiny = Space(name="tiny", stages=(Stage(24, 2, "re"), Stage(40, 2, "re")), expansions=(3, 6), kernels=(3,),
                 se=(0,))
    rng = np.random.default_rng(5)
    table = {str(b): float(v) for b, v in zip(tiny.unique_blocks(), rng.uniform(0.1, 1.0, 64))}
    lat = LinearResource.from_table(tiny, table)
    obj = SeparableObjective(tiny, rng.normal(0, 1, (2, 4, 2)), rng.normal(0, 1, (2, 3)))
    options = [tuple(c) for d in tiny.depths for c in product(range(2), repeat=d)]
    archs = [Arch((a, b), tiny) for a in options for b in options]
    T = float(np.median([lat.predict_arch(a) for a in archs]))
    brute = min(obj.value_arch(a) for a in archs if lat.predict_arch(a) <= T)
    arch, value = exact_optimum(obj, [(lat, T)])
    assert value == pytest.approx(brute) and lat.predict_arch(arch) <= T
    assert solve_milp(tiny, obj.discrete_costs(), obj.B, [(lat, lat.min_value() * 0.99)]) is None
    assert min_value(lat, [(lat, T)]) == pytest.approx(lat.min_value())


def test_soft_baseline_flags_a_violation():
    T = target(0.1)
    obj = SeparableObjective(HARDCORE, -np.ones((5, 4, 12)) * np.arange(12), -np.ones((5, 3)) * np.arange(3))
    with pytest.warns(InfeasibleResultWarning):
        r = solve(LAT, T, obj, algo="soft", steps=30, seed=0, lam=0.01)  # too weak a penalty: big blocks win
    assert not r.feasible and r.predicted_ms > T
    with warnings.catch_warnings():
        warnings.simplefilter("error", InfeasibleResultWarning)
        r = solve(LAT, target(0.9), objective(0), algo="soft", steps=30, seed=0, lam=100.0)
    # a penalty strong enough keeps the result within the bound (no warning was raised above)
    assert r.feasible and r.predicted_ms <= target(0.9) and r.predicted_ms == pytest.approx(LAT.predict_arch(r.arch))


def test_registry_takes_a_new_searcher_as_one_entry(monkeypatch):
    from search.problem import finish

    def cheapest(problem: Problem, steps, seed, **kw):
        arch = problem.latency.argmin_arch()
        return finish(problem, "cheapest", arch, *arch.one_hot(), [])

    monkeypatch.setitem(ALGOS, "cheapest", cheapest)
    r = solve(LAT, target(0.5), objective(0), algo="cheapest")
    assert r.feasible and r.predicted_ms == pytest.approx(LO)
    with pytest.raises(UnknownAlgo, match="unknown searcher 'nope'"):
        solve(LAT, target(0.5), objective(0), algo="nope")


def test_solve_accepts_a_lut_and_names_the_latency_after_its_device():
    lut = Lut.load(sorted(Path(__file__).resolve().parents[1].glob("luts/local/hardcore-mbv3/*.json"))[0])
    lat = lut.latency_model()
    r = solve(lut, (lat.min_value() + lat.max_value()) / 2, objective(0), steps=20)
    assert r.feasible and set(r.resources) == {"local:latency"}
    assert r.predicted_ms == pytest.approx(lat.predict_arch(r.arch), rel=1e-12)
    with pytest.raises(TypeError, match="expected a LinearResource or a Lut, got dict"):
        solve({"blocks": 1}, 1.0, objective(0))
