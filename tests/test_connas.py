"""CONNAS (ICLR 2026): per-block directions (three cases), their combination, the gradient modification's switch,
targets met across the range and several bounds at once, on the synthetic FLOPs LUT of test_search_core."""
import warnings

import numpy as np
import pytest

from profiler.model import LinearResource, block_cost
from profiler.space import HARDCORE, Arch
from search.connas import (block_direction, combine_directions, connas, constraint_direction, modified_gradients,
                           substitution_values)
from search.exact import SeparableObjective, exact_optimum
from search.problem import InfeasibleResultWarning, Problem, solve
from tests.conftest import HI, LAT, LO, PARAMS, TABLE, objective, target  # noqa: F401

# a second device that is memory-bound: its ranking of blocks differs from LAT's
LAT2 = LinearResource.from_table(HARDCORE, {str(b): 0.01 + block_cost(b)[0] / 1e6 + block_cost(b)[1] / 5e8
                                            for b in HARDCORE.unique_blocks()}, name="latency")


def unit(x):
    x = np.asarray(x, float)
    return x / np.linalg.norm(x)


# --- directions on hand-made blocks ----------------------------------------------------------------------------------
def test_block_direction_is_zero_when_every_candidate_is_feasible():
    np.testing.assert_array_equal(block_direction([1.0, 2.0, 3.0], 3.0), np.zeros(3))


def test_block_direction_points_from_violating_to_feasible_candidates():
    # feasible {1, 2}, violating {0, 3}: each feasible one gains 2 unit vectors, each violating one loses 2
    np.testing.assert_allclose(block_direction([3.0, 1.0, 2.0, 5.0], 2.5), [-0.5, 0.5, 0.5, -0.5])
    # feasible {1}, violating {0, 2}: (e1 - e0) + (e1 - e2)
    np.testing.assert_allclose(block_direction([3.0, 1.0, 2.0], 1.5), unit([-1, 2, -1]))
    # the slack decides: a hair over the bound counts as feasible
    np.testing.assert_allclose(block_direction([2.0 + 1e-12, 3.0], 2.0, slack=1e-9), unit([1, -1]))
    np.testing.assert_allclose(block_direction([2.0 + 1e-12, 3.0], 2.0), unit([1, -1]))  # none feasible: same order


def test_block_direction_without_feasible_candidates_follows_the_metric_order():
    # pairs to a cheaper candidate: 0->1, 0->2, 2->1
    np.testing.assert_allclose(block_direction([3.0, 1.0, 2.0], 0.5), unit([-1, 1, 0]))
    np.testing.assert_allclose(block_direction([2.0, 2.0, 1.0], 0.5), unit([-1, -1, 2]))  # ties give no vector
    np.testing.assert_allclose(block_direction([5.0, 4.0, 3.0, 2.0], 1.0), unit([-3, -1, 1, 3]))
    np.testing.assert_array_equal(block_direction([4.0, 4.0], 1.0), np.zeros(2))  # nothing cheaper anywhere


def test_two_violated_constraints_are_summed_and_normalised_per_block():
    # one stage, two α slots of 3 configs, two depths; two metrics with their own bounds
    va1, vb1 = np.array([[[3.0, 1.0, 2.0], [1.0, 1.0, 1.0]]]), np.array([[2.0, 1.0]])
    va2, vb2 = np.array([[[1.0, 3.0, 2.0], [5.0, 1.0, 1.0]]]), np.array([[1.0, 2.0]])
    d1 = constraint_direction(va1, vb1, 1.5)
    d2 = constraint_direction(va2, vb2, 0.5)
    np.testing.assert_allclose(d1[0][0, 0], unit([-1, 2, -1]))  # some feasible
    np.testing.assert_array_equal(d1[0][0, 1], np.zeros(3))  # all feasible
    np.testing.assert_allclose(d2[0][0, 0], unit([1, -1, 0]))  # none feasible: 1->0, 1->2, 2->0
    np.testing.assert_allclose(d2[1][0], unit([1, -1]))
    d_alpha, d_beta = combine_directions([d1, d2])
    np.testing.assert_allclose(d_alpha[0, 0], unit(unit([-1, 2, -1]) + unit([1, -1, 0])))
    np.testing.assert_allclose(d_alpha[0, 1], unit([-2, 1, 1]))  # constraint 2 alone: none feasible, 0->1, 0->2
    np.testing.assert_array_equal(d_beta, np.zeros((1, 2)))  # the two β directions cancel
    for blk in (d_alpha[0, 0], d_alpha[0, 1]):
        assert np.linalg.norm(blk) == pytest.approx(1.0) and blk.sum() == pytest.approx(0.0)


def test_substitution_values_change_exactly_one_block():
    rng = np.random.default_rng(0)
    a1 = np.eye(12)[rng.integers(0, 12, (5, 4))]
    b1 = np.eye(3)[rng.integers(0, 3, 5)]
    va, vb = substitution_values(LAT, a1, b1)
    base = Arch(tuple(tuple(int(c) for c in a1[s].argmax(-1)[:HARDCORE.depths[int(b1[s].argmax())]])
                      for s in range(5)), HARDCORE)
    for s, b, c in [(0, 0, 5), (2, 1, 11), (4, 0, 0)]:  # slots every depth has
        stages = [list(x) for x in base.stages]
        stages[s][b] = c
        assert va[s, b, c] == pytest.approx(LAT.predict_arch(Arch(tuple(map(tuple, stages)), HARDCORE)))
    for s in range(5):
        d = len(base.stages[s])
        if d < 4:  # a slot the depth drops: every config gives the base value
            np.testing.assert_allclose(va[s, 3], LAT.predict_arch(base))
        for j, depth in enumerate(HARDCORE.depths):  # other depths take the argmax configs of the added slots
            stages = list(base.stages)
            stages[s] = tuple(int(c) for c in a1[s].argmax(-1)[:depth])
            assert vb[s, j] == pytest.approx(LAT.predict_arch(Arch(tuple(stages), HARDCORE)))


# --- the modification ---------------------------------------------------------------------------------------------
def test_modification_on_logits_moves_every_block_along_its_direction():
    rng = np.random.default_rng(1)
    alpha = rng.dirichlet(np.ones(12), size=(5, 4))
    beta = rng.dirichlet(np.ones(3), size=5)
    g_alpha, g_beta = rng.normal(0, 1, (5, 4, 12)), rng.normal(0, 1, (5, 3))
    d_alpha, d_beta = combine_directions([(rng.normal(0, 1, (5, 4, 12)), rng.normal(0, 1, (5, 3)))])
    ga, gb = modified_gradients(alpha, beta, g_alpha, g_beta, d_alpha, d_beta, R=1.2, eps=1e-3, on="logits")
    ga0, gb0 = modified_gradients(alpha, beta, g_alpha, g_beta, d_alpha, d_beta, R=0.0, eps=1e-3, on="logits")
    norm = np.sqrt((ga0 ** 2).sum() + (gb0 ** 2).sum())
    # per block, the descent direction -∇' has at least (R - 1)‖∇‖ along d, whatever the objective wants
    assert np.all((-ga * d_alpha).sum(-1) >= 0.2 * norm - 1e-12)
    assert np.all((-gb * d_beta).sum(-1) >= 0.2 * norm - 1e-12)


def test_modification_on_alpha_turns_the_favourite_down_and_the_feasible_candidate_up():
    # one block: the objective prefers config 0 (p = 0.9); the constraint wants config 1
    alpha, beta = np.array([[[0.9, 0.05, 0.05]]]), np.array([[1.0]])
    g_alpha, g_beta = np.array([[[-1.0, 0.0, 0.0]]]), np.zeros((1, 1))
    d = (np.array([[[-1.0, 1.0, 0.0]]]) / np.sqrt(2), np.zeros((1, 1)))
    plain, _ = modified_gradients(alpha, beta, g_alpha, g_beta, *d, R=0.0, eps=1e-3)
    mod, _ = modified_gradients(alpha, beta, g_alpha, g_beta, *d, R=1.2, eps=1e-3)
    assert plain[0, 0, 0] < 0  # descent alone raises the favourite's logit
    assert mod[0, 0, 0] > 0 and mod[0, 0, 1] < 0  # modified: the favourite falls, the feasible one rises
    assert mod[0, 0, 1] == np.min(mod)


def test_modification_is_inactive_while_the_argmax_is_feasible():
    obj = objective(3)
    a = solve(LAT, HI, obj, algo="connas", steps=60, seed=2)  # every architecture meets HI
    b = solve(LAT, HI, obj, algo="connas", steps=60, seed=2, R=0.0)
    assert a.info["violating_steps"] == 0 and a.feasible
    np.testing.assert_array_equal(a.alpha, b.alpha)
    np.testing.assert_array_equal(a.beta, b.beta)
    assert [r["objective"] for r in a.trace] == [r["objective"] for r in b.trace] and a.arch == b.arch


def test_without_modification_a_violation_is_reported_not_hidden():
    # an objective preferring the biggest blocks everywhere, and a tight target
    big = SeparableObjective(HARDCORE, -np.ones((5, 4, 12)) * np.arange(12), -np.ones((5, 3)) * np.arange(3))
    T = target(0.1)
    with pytest.warns(InfeasibleResultWarning):
        r0 = solve(LAT, T, big, algo="connas", steps=80, seed=0, R=0.0)
    assert not r0.feasible and r0.predicted_ms > T and r0.info["selected_from"] == "none-feasible"
    with warnings.catch_warnings():
        warnings.simplefilter("error", InfeasibleResultWarning)
        r = solve(LAT, T, big, algo="connas", steps=80, seed=0)
    assert r.feasible and r.predicted_ms <= T and r.info["violating_steps"] > 0
    assert any(row["violated"] == 0 for row in r.trace) and r.trace[0]["violated"] == 1


# --- searches ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frac, seed", [(0.03, 0), (0.1, 1), (0.25, 2), (0.5, 3), (0.75, 4)])
def test_connas_meets_targets_across_the_range_near_the_exact_optimum(frac, seed):
    obj = objective(seed, mu=0.0 if seed % 2 else 1.0)
    T = target(frac)
    best_arch, best = exact_optimum(obj, [(LAT, T)])
    negated = SeparableObjective(HARDCORE, -obj.A, -obj.B, mu=-obj.mu, a0=obj.a0)
    worst = -exact_optimum(negated, [(LAT, T)])[1]  # the worst feasible value: |best| can be ~0 at tight targets
    r = solve(LAT, T, obj, algo="connas", steps=200, seed=seed)
    assert r.feasible and r.predicted_ms <= T and LAT.predict_arch(r.arch) == pytest.approx(r.predicted_ms)
    found = obj.value_arch(r.arch)
    assert found >= best - 1e-9  # the MILP is a true lower bound
    assert (found - best) / (worst - best) < 0.1, (found, best, worst)  # measured ≤ 0.02 on these cases
    if frac <= 0.25:
        assert r.info["violating_steps"] > 0  # the unconstrained descent overshoots: the modification was needed
    assert r.info["selected_from"] == "late"


def test_several_bounds_on_two_devices_and_params_are_all_met():
    T, T2, p_max = target(0.4), target(0.3, LAT2), target(0.3, PARAMS)
    bounds = [(LAT, T), (PARAMS, p_max), (LAT2, T2)]
    obj = objective(7, mu=1.0)
    best_arch, best = exact_optimum(obj, bounds)
    r = solve(LAT, T, obj, algo="connas", constraints=bounds[1:], steps=200, seed=0)
    assert r.feasible and set(r.resources) == {"latency", "params", "latency#2"}
    for res, bound in bounds:
        assert res.predict_arch(r.arch) <= bound
    alone = solve(LAT, T, obj, algo="connas", steps=200, seed=0)
    assert not (PARAMS.predict_arch(alone.arch) <= p_max and LAT2.predict_arch(alone.arch) <= T2)  # bounds bind
    assert best - 1e-9 <= obj.value_arch(r.arch) <= best + 0.1 * abs(best)


def test_solve_runs_connas_and_reports_its_work():
    r = solve(LAT, target(0.3), objective(5), algo="connas", steps=50, seed=1)
    assert r.algo == "connas" and len(r.trace) == 51 and {"violated", "arch_latency"} <= set(r.trace[0])
    info = r.info
    assert info["objective_evals"] == 51 + info["evaluated_archs"]
    assert 1 <= info["late_archs"] <= 26 and info["evaluated_archs"] == info["late_feasible"] >= 1
    assert 0 <= info["violating_steps"] <= 50 and info["distinct_archs"] >= info["late_archs"]
    again = solve(LAT, target(0.3), objective(5), algo="connas", steps=50, seed=1)
    assert again.arch == r.arch
    np.testing.assert_array_equal(again.alpha, r.alpha)


@pytest.mark.parametrize("kw,match", [({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'"),
                                      ({"on": "beta"}, "unknown on='beta'"),
                                      ({"late_frac": 1.5}, r"late_frac must be in \[0, 1\], got 1.5"),
                                      ({"R": -1.0}, "R and eps must be >= 0, got R=-1.0")])
def test_bad_arguments_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        connas(Problem(HARDCORE, [(LAT, target(0.5))], objective(0)), steps=2, **kw)
