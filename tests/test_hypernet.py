"""Hypernetwork family searcher (search/hypernet.py): one training, an architecture for every budget.

Small training settings (300 steps × 8 draws) keep the file fast; the trained hypernetwork is cached per objective
object, resource tables and settings, so tests sharing OBJ and SMALL train it once.
"""
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from profiler.lut import Lut
from profiler.model import LinearResource, block_cost, params_model
from profiler.space import HARDCORE, Arch
from search import hypernet as hn
from search.exact import SeparableObjective, exact_optimum
from search.problem import InfeasibleResultWarning, Problem, solve
from tests.conftest import objective

ROOT = Path(__file__).resolve().parents[1]
LUT = Lut.load(ROOT / "luts/local/hardcore-mbv3/20261122T232635Z-onnxruntime-t1-b1.json")
LAT = LUT.latency_model(name="latency")
LO, HI = LAT.min_value(), LAT.max_value()
SMALL = dict(steps=300, batch=8)


OBJ = objective(0)


def run(target, obj=OBJ, constraints=(), **kw):
    problem = Problem(HARDCORE, [(LAT, target)] + list(constraints), obj)
    problem.check()
    return hn.hypernet(problem, **{**SMALL, **kw})


def test_gumbel_straight_through_samples_differ_and_pass_gradient():
    logits = torch.randn(5, 4, 12, generator=torch.Generator().manual_seed(0), requires_grad=True)
    u1 = torch.rand(5, 4, 12, generator=torch.Generator().manual_seed(1))
    u2 = torch.rand(5, 4, 12, generator=torch.Generator().manual_seed(2))
    s1, s2 = hn.gumbel_softmax_st(logits, 0.5, noise=u1), hn.gumbel_softmax_st(logits, 0.5, noise=u2)
    for s in (s1, s2):  # forward: exactly one-hot per group
        assert torch.allclose(s.sum(-1), torch.ones(5, 4)) and set(s.detach().unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(s1, s2)
    assert torch.equal(s1, hn.gumbel_softmax_st(logits, 0.5, noise=u1))  # the noise alone decides the sample
    # the sample is the argmax of logits + Gumbel noise (the Gumbel-max trick)
    g = -torch.log(-torch.log(u1))
    assert torch.equal(s1.argmax(-1), (logits + g).argmax(-1))
    cost = torch.randn(5, 4, 12, generator=torch.Generator().manual_seed(3))
    (s1 * cost).sum().backward()
    grad = logits.grad.clone()
    assert grad.abs().sum() > 0
    # straight through: the gradient is that of the relaxed sample softmax((logits + g)/τ)
    ref = logits.detach().requires_grad_(True)
    (torch.softmax((ref + g) / 0.5, -1) * cost).sum().backward()
    assert torch.allclose(grad, ref.grad, atol=1e-6)


def test_simplex_grid_covers_the_simplex():
    for k, n in [(1, 200), (2, 100), (3, 200)]:
        pts = hn.simplex_grid(k, n)
        assert pts.shape[1] == k + 1 and len(pts) <= n and np.allclose(pts.sum(1), 1.0) and (pts >= 0).all()
        assert len(np.unique(pts.round(9), axis=0)) == len(pts)
        for corner in np.eye(k + 1):  # every pure trade-off is on the grid
            assert (np.abs(pts - corner).max(1) < 1e-12).any()


@pytest.mark.parametrize("frac", [0.03, 0.15, 0.35, 0.6])
def test_family_covers_budgets_across_the_feasible_range(frac):
    T = LO + frac * (HI - LO)
    with warnings.catch_warnings():
        warnings.simplefilter("error", InfeasibleResultWarning)
        r = run(T)
    assert r.algo == "hypernet" and r.feasible and r.predicted_ms <= T
    assert r.predicted_ms == pytest.approx(LAT.predict_arch(r.arch))
    fam = r.info["family"]
    meeting = [m for m in fam if m["latency"] <= T]
    assert meeting and all(m["feasible"] for m in meeting)
    # the pick is the family's best validation loss under the bound, scored at the one-hot architecture
    assert r.info["S"] in [m["S"] for m in meeting]
    assert OBJ.value_arch(r.arch) == pytest.approx(min(m["loss"] for m in meeting))
    # and not far from the exact constrained optimum (relative to the spread of f over the space)
    best = exact_optimum(OBJ, [(LAT, T)])[1]
    worst_case = -exact_optimum(SeparableObjective(HARDCORE, -OBJ.A, -OBJ.B), [])[1]
    assert OBJ.value_arch(r.arch) - best <= 0.15 * (worst_case - best)


def test_family_spans_the_latency_range_and_is_monotone_in_S():
    r = run(HI)
    grid = r.info["family"][:r.info["grid_points"]]
    S = np.array([m["S"] for m in grid])
    lat = np.array([m["latency"] for m in grid])
    assert lat.min() <= LO + 0.03 * (HI - LO)  # the latency corner reaches the fast end
    assert lat.max() >= LO + 0.25 * (HI - LO)  # the task corner is slow (its optimum is at ~0.5 of the range)
    heavy, light = lat[S[:, 1] >= 0.8].mean(), lat[S[:, 1] <= 0.2].mean()
    assert heavy < light - 0.2 * (HI - LO)
    # more latency weight, lower latency: strongly rank-anticorrelated along the grid
    rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731
    assert np.corrcoef(rank(S[:, 1]), rank(lat))[0, 1] < -0.8


def test_second_call_reuses_the_trained_hypernet():
    obj = objective(5)
    first = run(LO + 0.3 * (HI - LO), obj=obj)
    assert first.info["trained"] and first.info["train_evaluations"] == 300 * 8 + 1
    assert first.info["evaluations"] == first.info["train_evaluations"] + first.info["family_evaluations"]
    for frac in (0.1, 0.5, 0.3):
        again = run(LO + frac * (HI - LO), obj=obj)
        assert not again.info["trained"] and again.info["cache"] == "memory"
        assert again.info["train_evaluations"] == 0 and again.info["hypernet_evaluations"] == 300 * 8 + 1
        assert again.info["evaluations"] <= 2 * 16 + 5  # only new family members, at most the refinement
        assert again.trace is first.trace
    assert again.arch == first.arch  # same budget, same member
    # other settings or another objective object train anew
    assert run(LO + 0.3 * (HI - LO), obj=obj, seed=1).info["trained"]
    assert run(LO + 0.3 * (HI - LO), obj=objective(5)).info["trained"]


def test_disk_cache_survives_a_new_process_and_refuses_another_objective(tmp_path):
    path = tmp_path / "h.pt"
    T = LO + 0.25 * (HI - LO)
    first = run(T, obj=objective(6), cache_path=str(path), steps=120)
    assert first.info["trained"] and path.exists()
    hn._CACHE.clear()  # as if in a new process; an equal objective object answers the probe identically
    again = run(T, obj=objective(6), cache_path=str(path), steps=120)
    assert not again.info["trained"] and again.info["cache"] == "disk"
    assert again.info["train_evaluations"] == 0 and again.info["cache_check_evaluations"] == 1
    assert again.arch == first.arch and len(again.trace) == len(first.trace)
    hn._CACHE.clear()
    other = run(T, obj=objective(7), cache_path=str(path), steps=120)
    assert other.info["trained"] and other.info["cache"] is None  # a different objective: retrained, file replaced
    hn._CACHE.clear()
    assert run(T, obj=objective(7), cache_path=str(path), steps=120).info["cache"] == "disk"


def test_multi_constraint_result_meets_every_bound():
    # a second device whose costs rank blocks differently, and the parameter count
    table2 = {str(b): 0.01 + block_cost(b)[0] / 2e6 + 0.2 * block_cost(b)[1] / 1e8 for b in HARDCORE.unique_blocks()}
    lat2 = LinearResource.from_table(HARDCORE, table2, name="dev2:latency")
    params = params_model(HARDCORE)
    bounds = [(lat2, lat2.min_value() + 0.3 * (lat2.max_value() - lat2.min_value())),
              (params, params.min_value() + 0.3 * (params.max_value() - params.min_value()))]
    T = LO + 0.4 * (HI - LO)
    r = run(T, obj=objective(8), constraints=bounds)
    assert r.feasible and len(r.info["S"]) == 4
    assert LAT.predict_arch(r.arch) <= T
    for res, bound in bounds:
        assert res.predict_arch(r.arch) <= bound
    assert set(r.resources) == {"latency", "dev2:latency", "params"}
    assert all({"latency", "dev2:latency", "params", "loss", "arch", "S"} <= set(m) for m in r.info["family"])


def test_solve_with_algo_hypernet():
    T = LO + 0.2 * (HI - LO)
    r = solve(LAT, T, OBJ, algo="hypernet", **SMALL)
    assert r.algo == "hypernet" and r.feasible and r.predicted_ms <= T and r.target_ms == T
    assert isinstance(r.arch, Arch) and r.alpha.shape == (5, 4, 12) and r.beta.shape == (5, 3)
    assert np.allclose(r.alpha.sum(-1), 1.0) and np.allclose(r.beta.sum(-1), 1.0)
    assert len(r.trace) == SMALL["steps"] and {"step", "objective", "latency", "tau"} <= set(r.trace[0])


def test_a_missed_bound_is_reported_never_hidden():
    # a hypernetwork trained for one step is still near its random start: no member is near the minimum latency
    T = LO * 1.001
    with pytest.warns(InfeasibleResultWarning, match="hypernet returned an architecture that violates"):
        r = run(T, obj=objective(9), steps=1)
    assert not r.feasible and r.predicted_ms > T
    assert r.info["refined_points"] > 0  # the grid was refined towards the latency corner first
    assert r.predicted_ms == pytest.approx(min(m["latency"] for m in r.info["family"]))  # the cheapest member
