"""The searchers' stopping rule (search/stopping.py): argmax unchanged for N steps, or the Frank-Wolfe gap closed.

Easy problems: a random separable objective (tests/conftest.py) on the synthetic latency table, whose argmax settles
long before the step cap. Each searcher must stop early when asked (or when its objective asks, as the supernet
oracle does), say so in its info, and run to the cap otherwise, as before.
"""
import numpy as np
import pytest

from search.problem import solve
from search.stopping import Stopping, decided, default_patience
from tests.conftest import LAT, objective, target


class Patient:
    """An analytic objective that asks its searchers for a stopping rule, as ``SupernetOracle`` does."""

    def __init__(self, inner, patience):
        self.inner, self.patience, self.calls = inner, patience, 0

    def __call__(self, alpha, beta):
        self.calls += 1
        return self.inner(alpha, beta)


def test_the_rule_fires_after_patience_unchanged_steps_and_not_before():
    s = Stopping(patience=3)
    keys = ["a", "b", "b", "b", "b", "c"]
    fired = [s.update(k) for k in keys]
    assert fired == [False, False, False, False, True, False]  # "b" seen 4 times = unchanged for 3 steps
    assert s.info() == {"steps_used": 6, "stopped": "argmax unchanged for 3 steps", "patience": 3}
    s = Stopping(patience=0)
    assert not any(s.update("same") for _ in range(50)) and s.info()["stopped"] == "step cap"


def test_the_gap_rule_needs_a_full_window_of_small_gaps():
    s = Stopping(patience=4, gap_tol=0.01)
    for i, gap in enumerate([1.0, 0.5, 0.005, 0.005, 0.005, 0.005]):
        assert s.update(str(i), gap, loss=1.0) == (i == 5)  # the argmax changes every step: only the gap can stop
    assert s.info()["stopped"].startswith("Frank-Wolfe gap")


def test_default_patience_comes_from_the_objective_and_is_checked():
    assert default_patience(objective(0)) == 0
    assert default_patience(Patient(objective(0), 7)) == 7
    assert default_patience(Patient(objective(0), 7), 3) == 3
    with pytest.raises(ValueError, match="patience must be >= 0, got -1"):
        default_patience(objective(0), -1)


@pytest.mark.parametrize("algo, steps, kw", [
    ("bcsfw", 400, {}),
    ("connas", 400, {}),
    ("dca", 100, {"points": 4, "sweep_steps": 100}),
    ("hypernet", 300, {"batch": 4}),
])
def test_each_searcher_stops_early_on_an_easy_problem_and_says_why(algo, steps, kw):
    obj = Patient(objective(3), 10)
    r = solve(LAT, target(0.4), obj, algo=algo, steps=steps, seed=0, **kw)
    assert r.feasible
    assert r.info["stopped"] == "argmax unchanged for 10 steps", r.info.get("stopped")
    assert 10 <= r.info["steps_used"] < steps
    plain = solve(LAT, target(0.4), objective(3), algo=algo, steps=steps, seed=0, **kw)  # no rule: the cap, as before
    assert plain.info["stopped"] == "step cap"
    assert plain.info["steps_used"] == steps


def test_bcsfw_trace_reports_the_frank_wolfe_gap_and_an_explicit_patience_wins():
    obj = Patient(objective(4), 50)
    r = solve(LAT, target(0.5), obj, algo="bcsfw", steps=300, seed=1, patience=8)
    gaps = [row["fw_gap"] for row in r.trace[:-1]]
    assert r.info["patience"] == 8 and r.info["steps_used"] == len(gaps) < 300
    assert all(g is None or g >= -1e-9 for g in gaps)  # ⟨d, ζ − ξ⟩ ≥ 0: ξ minimises ⟨d, ·⟩ over a set holding ζ
    assert np.mean(gaps[-5:]) < np.mean(gaps[:5])  # closes as the iterate converges


def test_array_keys_allow_a_tolerance_measured_from_where_the_run_began():
    s = Stopping(patience=3, tolerance=0.25)
    base = np.zeros(8, int)
    drift = [base, base, np.r_[1, 0, 0, 0, 0, 0, 0, 0], np.r_[1, 1, 0, 0, 0, 0, 0, 0], np.r_[1, 1, 1, 0, 0, 0, 0, 0]]
    fired = [s.update(k) for k in drift]
    # 1 and 2 of 8 choices off the anchor are within 25 %; 3 of 8 are not, though each step changes only one
    assert fired == [False, False, False, True, False]
    assert list(decided(np.array([[5.0, 0.0, 0.0], [0.1, 0.0, 0.0]]))) == [0, -1]  # the second group is undecided
