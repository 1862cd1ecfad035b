"""Same behaviour across refactors: eq. (3)'s predictions and every searcher's result equal the golden files.

The golden files were written by ``python -m tests.golden.make`` before the latency model moved into profiler/.
A deliberate change to a searcher regenerates ``tests/golden/searchers.json`` (``python -m tests.golden.make
searchers``) in the same commit; predictions.json changes only when a committed LUT or eq. (3) does.
"""
import json

import pytest

from tests.golden import make


def test_predictions_match_the_golden_file():
    golden = json.loads(make.PREDICTIONS.read_text())
    now = make.predictions()
    assert now["seed"] == golden["seed"] and sorted(now["luts"]) == sorted(golden["luts"])
    for name, want in golden["luts"].items():
        got = now["luts"][name]
        assert got["archs"] == want["archs"], name
        assert got["predicted_ms"] == pytest.approx(want["predicted_ms"], rel=1e-9, abs=0), name


def test_searchers_match_the_golden_file():
    golden = json.loads(make.SEARCHERS.read_text())["results"]
    now = make.searchers()["results"]
    assert sorted(now) == sorted(golden)
    for algo, rows in golden.items():
        assert [r["arch"] for r in now[algo]] == [r["arch"] for r in rows], algo
        assert [r["predicted_ms"] for r in now[algo]] == pytest.approx([r["predicted_ms"] for r in rows],
                                                                       rel=1e-9, abs=0), algo
