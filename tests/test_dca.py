"""DCA-NAS (search/dca.py): Lagrangian search with dual ascent, the lookup graph (monotone, inverted, stored, reused),
step-down on an infeasible result, several bounds, and the registry entry.

Synthetic LUT-like latency on the HARDCORE space (FLOPs plus a per-block overhead, as in test_search_core) and
separable objectives whose exact optimum the MILP gives.
"""
import json
import warnings

import numpy as np
import pytest

from profiler.errors import BadInput
from profiler.model import LinearResource, block_cost
from profiler.space import HARDCORE
from search import dca as D
from search.exact import SeparableObjective, exact_optimum
from search.problem import InfeasibleResultWarning, Problem, solve
from tests.conftest import HI, LAT, LO, PARAMS, objective, target

FAST = dict(steps=60, points=8)  # short runs, small sweep: the tests stay fast


@pytest.fixture(autouse=True)
def fresh_cache():
    D.forget_graphs()
    yield
    D.forget_graphs()


def test_running_maximum_makes_a_noisy_graph_monotone_and_invert_reads_it():
    g = D.LookupGraph.from_points("k", [4.0, 1.0, 2.0, 3.0, 5.0], [3.5, 1.2, 2.6, 2.2, 3.4], ["a", "b", "c", "d", "e"])
    assert g.kprime == [1.0, 2.0, 3.0, 4.0, 5.0] and g.archs == ["b", "c", "d", "a", "e"]
    assert g.raw == [1.2, 2.6, 2.2, 3.5, 3.4] and g.value == [1.2, 2.6, 2.6, 3.5, 3.5]  # never below a point
    assert D.invert(g, 2.4, interpolate=False) == (1.0, 0)  # K' = 3 gave 2.2, but K' = 2 before it gave 2.6
    kp, i = D.invert(g, 1.9)
    assert i == 0 and kp == pytest.approx(1.0 + (1.9 - 1.2) / (2.6 - 1.2))  # on the line from (1, 1.2) to (2, 2.6)
    assert D.invert(g, 2.6) == (3.0, 2)  # the last of equal values, no line to the next (3.5 > 2.6)
    assert D.invert(g, 9.0) == (5.0, 4)  # above the graph: the largest K' the sweep tried
    assert D.invert(g, 1.0) == (None, -1)


def test_swept_graph_is_monotone_and_its_inverse_meets_the_bound():
    problem = Problem(HARDCORE, [(LAT, HI)], objective(1))
    settings = D.Settings(steps=60)
    graph, runs, source = D.lookup_graph(problem, seed=0, settings=settings, points=8)
    assert (runs, source) == (8, "sweep") and len(graph.kprime) == 8
    assert graph.kprime[0] == pytest.approx(LO) and graph.kprime[-1] == pytest.approx(HI)
    assert np.all(np.diff(graph.kprime) > 0) and np.all(np.diff(graph.value) >= 0)
    np.testing.assert_array_equal(graph.value, np.maximum.accumulate(graph.raw))
    assert graph.value[-1] > graph.value[0] + 0.3 * (HI - LO)  # the bound really moves the result
    checked = 0
    for K in np.linspace(graph.value[0], graph.value[-1], 7)[1:-1]:
        kp, i = D.invert(graph, K, interpolate=False)
        assert kp == graph.kprime[i] and graph.value[i] <= K and graph.value[i + 1] > K
        run = D.lagrangian_search(problem, [kp], settings, seed=0)  # the same run the sweep made at this K'
        assert LAT.predict_arch(run.arch) == pytest.approx(graph.raw[i]) and LAT.predict_arch(run.arch) <= K
        kp_line, j = D.invert(graph, K)
        assert j == i and graph.kprime[i] <= kp_line < graph.kprime[i + 1]
        checked += 1
    assert checked == 5


def test_dual_ascent_raises_lambda_while_violated_and_keeps_it_nonnegative():
    # an objective that wants the biggest blocks: a tight K' is violated at the start
    big = SeparableObjective(HARDCORE, -np.ones((5, 4, 12)) * np.arange(12), -np.ones((5, 3)) * np.arange(3))
    problem = Problem(HARDCORE, [(LAT, HI)], big)
    K = target(0.25)
    run = D.lagrangian_search(problem, [K], D.Settings(steps=150), seed=0)
    lam = np.array([row["lambda:latency"] for row in run.trace])
    lat = np.array([row["latency"] for row in run.trace])
    assert np.all(lam >= 0) and run.lam[0] >= 0
    assert lat[0] > K and lam[0] == 0.0
    rising = lat[:-1] > K  # λ_{t+1} = max(0, λ_t + η (k_t − K') / K')
    assert np.all(lam[1:][rising] > lam[:-1][rising]) and np.all(lam[1:][~rising] <= lam[:-1][~rising])
    assert lam.max() > 0 and lat[-1] <= K * 1.05  # the multiplier pulled the relaxed latency down to K'
    free = D.lagrangian_search(problem, [HI], D.Settings(steps=50), seed=0)  # K' = max never binds
    assert all(row["lambda:latency"] == 0.0 for row in free.trace)
    assert LAT.predict_arch(free.arch) > LAT.predict_arch(run.arch)


def test_targets_across_the_range_are_met_with_one_sweep():
    obj = objective(0)
    gaps = []
    for n, frac in enumerate([0.05, 0.3, 0.6, 0.9]):
        T = target(frac)
        r = solve(LAT, T, obj, algo="dca", seed=0, **FAST)
        assert r.feasible and r.predicted_ms <= T and r.resources["latency"] == r.predicted_ms
        assert r.info["sweep_runs"] == (8 if n == 0 else 0) and r.info["graph_reused"] == (n > 0)
        assert r.info["runs"] == r.info["sweep_runs"] + r.info["final_runs"]
        assert r.info["objective_evals"] == r.info["runs"] * 61 and r.info["run_steps"] == 60
        assert r.info["kprime"] == r.info["kprime_tried"][-1] and r.info["lambda"]["latency"] >= 0
        best = exact_optimum(obj, [(LAT, T)])[1]
        gaps.append((obj.value_arch(r.arch) - best) / abs(best))
    assert min(gaps) >= -1e-9 and np.mean(gaps) < 0.15, gaps


def test_infeasible_pick_steps_down_and_a_miss_is_reported():
    obj, T = objective(2), target(0.05)
    with pytest.warns(InfeasibleResultWarning, match="dca returned an architecture that violates"):
        r = solve(LAT, T, obj, algo="dca", max_extra=0, **FAST)  # no extra run allowed: the miss is returned
    assert not r.feasible and r.predicted_ms > T and r.info["final_runs"] == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", InfeasibleResultWarning)
        r = solve(LAT, T, obj, algo="dca", max_extra=3, **FAST)
    tried = r.info["kprime_tried"]
    assert r.feasible and r.predicted_ms <= T and r.info["sweep_runs"] == 0 and r.info["final_runs"] == len(tried)
    assert len(tried) > 1 and np.all(np.diff(tried) < 0)  # stepped down along the graph


def test_graph_file_is_written_atomically_and_reused(tmp_path):
    path = tmp_path / "graphs" / "dca.json"
    obj = objective(3)
    first = solve(LAT, target(0.4), obj, algo="dca", objective_key="sep-3", graph_path=path, **FAST)
    assert first.info["sweep_runs"] == 8 and first.info["graph_source"] == "sweep"
    data = json.loads(path.read_text())
    assert data["schema_version"] == D.SCHEMA_VERSION and list(data["graphs"]) == [first.info["graph_key"]]
    assert not [p for p in path.parent.iterdir() if p.name != path.name]  # no temporary file left behind
    D.forget_graphs()  # a new process: only the file knows the graph
    again = solve(LAT, target(0.4), objective(3), algo="dca", objective_key="sep-3", graph_path=path, **FAST)
    assert again.info["sweep_runs"] == 0 and again.info["graph_source"] == "file" and again.info["graph_reused"]
    assert again.arch == first.arch and again.info["runs"] == first.info["runs"] - 8
    assert again.info["graph"] == first.info["graph"]
    third = solve(LAT, target(0.7), obj, algo="dca", objective_key="sep-3", graph_path=path, **FAST)
    assert third.info["graph_source"] == "memory" and third.info["sweep_runs"] == 0  # another target, same graph
    other = solve(LAT, target(0.4), obj, algo="dca", objective_key="sep-3", graph_path=path, seed=1, **FAST)
    assert other.info["sweep_runs"] == 8  # another seed is another graph, added to the same file
    assert len(json.loads(path.read_text())["graphs"]) == 2
    with pytest.raises(ValueError, match="objective_key"):
        solve(LAT, target(0.4), obj, algo="dca", graph_path=path, **FAST)
    path.write_text(json.dumps({"schema_version": 99, "graphs": {}}))
    with pytest.raises(BadInput, match=r"dca\.json: schema version 99"):
        solve(LAT, target(0.4), obj, algo="dca", objective_key="sep-3", graph_path=path, reuse=False, **FAST)


def test_memory_reuse_is_per_objective_without_a_key():
    a = solve(LAT, target(0.5), objective(4), algo="dca", **FAST)
    b = solve(LAT, target(0.5), objective(5), algo="dca", **FAST)  # another objective object: its own sweep
    assert a.info["sweep_runs"] == 8 and b.info["sweep_runs"] == 8


def test_several_bounds_are_all_met():
    # a second device whose latency is dominated by per-block overhead, plus a params budget
    table = {str(b): 0.1 + block_cost(b)[0] / 2e7 for b in HARDCORE.unique_blocks()}
    other = LinearResource.from_table(HARDCORE, table, name="npu:latency")
    p_max = PARAMS.min_value() + 0.2 * (PARAMS.max_value() - PARAMS.min_value())
    o_max = other.min_value() + 0.4 * (other.max_value() - other.min_value())
    obj = objective(6, mu=1.0)
    for frac in (0.3, 0.6):
        T = target(frac)
        r = solve(LAT, T, obj, algo="dca", constraints=[(other, o_max), (PARAMS, p_max)], **FAST)
        assert r.feasible, r.resources
        assert LAT.predict_arch(r.arch) <= T and other.predict_arch(r.arch) <= o_max
        assert PARAMS.predict_arch(r.arch) <= p_max
        assert set(r.info["lambda"]) == {"latency", "npu:latency", "params"} and min(r.info["lambda"].values()) >= 0
        assert len(r.info["kprime_others"]) == 2
        assert r.trace[-1]["params"] == pytest.approx(PARAMS.predict(r.alpha, r.beta))


def test_solve_runs_dca_and_rejects_bad_settings():
    r = solve(LAT, target(0.5), objective(7), algo="dca", steps=30, points=4)
    assert r.algo == "dca" and r.feasible and r.info["run_steps"] == 30 and len(r.trace) == 31
    assert {"runs", "sweep_runs", "kprime", "lambda", "graph_reused", "objective_evals"} <= set(r.info)
    assert solve(LAT, target(0.5), objective(7), algo="dca", steps=300, points=3,
                 sweep_steps=20).info["run_steps"] == 20  # every run capped at the sweep's length
    with pytest.raises(ValueError, match="at least 2 grid points"):
        solve(LAT, target(0.5), objective(7), algo="dca", points=1)
    with pytest.raises(ValueError, match="one positive bound per resource"):
        D.lagrangian_search(Problem(HARDCORE, [(LAT, HI)], objective(7)), [HI, HI])
