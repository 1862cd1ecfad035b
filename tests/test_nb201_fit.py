"""Tables fitted from real-device measurements (the shared NB201 data) and the conformal confidence margin: held-out
accuracy on the Pi 4, `profile import` end to end, and the share of held-out networks that meet the target by
measured latency when searched under the tightened bound, for 0.9 / 0.95 / 0.99."""
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from profiler.conformal import (NoCalibration, calibration_cells, calibration_pairs, conformal_quantile,
                                tightened_target)
from profiler.fit import fit_table, held_out_line, load_fitted, read_csv, split
from profiler.nb201 import CellArch, connected
from tests.nb201_data import nb201_csv

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def pi4():
    data, model = fit_table(nb201_csv(), "raspi4_ms", train=1000, seed=0)
    codes, y = read_csv(nb201_csv(), "raspi4_ms")
    return data, model, codes, y


def test_pi4_fit_held_out(pi4):
    data, model, codes, y = pi4
    h = data["validation"]["held_out"]
    assert h["r2"] >= 0.95, h
    assert data["provenance"] == "fitted from 1000 networks of nb201_accuracy_latency.csv.gz, column raspi4_ms"
    assert data["split"] == {"seed": 0, "train": 1000, "test": 14625, "rule": "profiler.fit.split",
                             "calibration": "out-of-fold on the training rows"}
    # the model written to the file is the model that was judged
    again = load_fitted(json.loads(json.dumps(data)))
    test = split(len(y), 1000, 0)["test"]
    assert np.allclose(again.predict_codes(codes[test]), model.predict_codes(codes[test]))
    # richer terms than αᵀΘ earn their place on held-out rows: the additive part alone does worse
    fixed, theta = model.additive()
    add = fixed + theta[np.arange(6), codes[test]].sum(1)
    r2_add = 1 - ((y[test] - add) ** 2).sum() / ((y[test] - y[test].mean()) ** 2).sum()
    assert r2_add < h["r2"]


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_confidence_margin_holds_on_held_out_networks(pi4, confidence):
    """Targets at the 25/50/75th latency percentiles: of the held-out networks predicted under T', the share measured
    under T is at least the confidence within 3 standard errors at every target (the split-conformal promise, for a
    network drawn like the calibration ones), and so is the share of the 300 nearest the bound, pooled over the three
    targets. Not at each target: from the 1,000 training rows' out-of-fold pairs (issue 15; 7,313 held-out pairs
    before) the neighbourhood of T' is wide, and at the Pi 4's 25th percentile 85 % of the 115 nearest met it at
    0.95 (2026-11-30)."""
    data, model, codes, y = pi4
    test = split(len(y), 1000, 0)["test"]
    p, m = model.predict_codes(codes[test]), y[test]
    pc, mc, what = calibration_pairs(data)
    assert len(pc) == 1000 and "calibration" in what
    near_met = near_n = 0
    for pct in (25, 50, 75):
        target = float(np.percentile(y, pct))
        t = tightened_target(target, pc, mc, confidence)
        assert t["searched_target"] < target  # on the Pi 4 the table under-predicts often enough to need a margin
        ok = p <= t["searched_target"]
        share, n = float((m[ok] <= target).mean()), int(ok.sum())
        assert share >= confidence - 3 * np.sqrt(confidence * (1 - confidence) / n), (pct, share, n)
        near = np.argsort(np.abs(p - t["searched_target"]))[:300]
        near = near[ok[near]]
        near_met, near_n = near_met + int((m[near] <= target).sum()), near_n + len(near)
    share = near_met / near_n
    assert share >= confidence - 3 * np.sqrt(confidence * (1 - confidence) / near_n), (share, near_n)


def test_margin_grows_with_confidence(pi4):
    pc, mc, _ = calibration_pairs(pi4[0])
    q = [tightened_target(20.0, pc, mc, c)["margin"] for c in (0.5, 0.9, 0.95, 0.99)]
    assert q == sorted(q) and q[0] < q[-1]


def test_conformal_quantile_needs_enough_networks():
    assert conformal_quantile(np.arange(1, 20), 0.9) == 18.0  # ⌈20·0.9⌉ = 18th smallest
    with pytest.raises(NoCalibration, match="needs at least 99 calibration networks; have 50"):
        conformal_quantile(np.ones(50), 0.99)
    with pytest.raises(NoCalibration, match="has no calibration data"):
        calibration_pairs({"entries": {}})


def _small_csv(tmp_path, rows=400):
    src = gzip.open(nb201_csv(), "rt").read().splitlines()
    out = tmp_path / "small.csv"
    out.write_text("\n".join(src[: rows + 1]) + "\n")
    return out


def test_profile_import_end_to_end(tmp_path):
    csv_path = _small_csv(tmp_path)
    r = subprocess.run([str(BIN / "profile"), "import", str(csv_path), "--column", "pixel3_ms", "--train", "200",
                        "--seed", "3", "--features", "op,live", "--out", str(tmp_path / "luts")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.parent == tmp_path / "luts" / "pixel3" / "nb201" and path.name.endswith("-fitted-pixel3_ms.json")
    data = json.loads(path.read_text())
    assert data["provenance"] == "fitted from 200 networks of small.csv, column pixel3_ms"
    assert data["split"]["seed"] == 3 and data["split"]["train"] + data["split"]["test"] == 400
    assert set(data["model"]["kinds"]) <= {"op", "live"} and "held-out R²" in r.stderr
    cells = calibration_cells(data)  # the calibration networks are named, so a search can rank them
    assert len(cells) == data["validation"]["calibration"]["n"] == 200 and cells.max() < 15625
    # issue 15: they are the training rows (out-of-fold predictions), never a held-out row the benchmark judges by
    codes, _ = read_csv(csv_path, "pixel3_ms")
    parts = split(len(codes), 200, 3)
    assert sorted(cells) == sorted(CellArch(tuple(c)).index for c in codes[parts["train"]])
    assert not set(cells) & {CellArch(tuple(c)).index for c in codes[parts["test"]]}
    # the table loads as a LUT (a fitted table has no thread count); an older one saying threads 0 loads too
    from profiler.lut import Lut

    assert "threads" not in data["runtime"] and Lut.load(path).latency_model().predict_arch(CellArch((3,) * 6)) > 0
    data["runtime"]["threads"] = 0
    old = tmp_path / "old.json"
    old.write_text(json.dumps(data))
    Lut.load(old)


def test_relative_errors_leave_out_disconnected_cells(pi4):
    """The Pi 4 measures some cells without an input-to-output path at ~0.01 ms (the runtime drops them): MAPE over
    every network is then hundreds of %, so the report gives relative errors over the connected ones, with a count."""
    data, model, codes, y = pi4
    v = data["validation"]
    test = split(len(y), 1000, 0)["test"]
    linked = connected(codes[test])
    assert v["held_out"]["mape_pct"] > 100 and v["held_out_connected"]["mape_pct"] < 20
    assert v["held_out_connected"]["n"] == linked.sum() and v["held_out_disconnected"]["n"] == (~linked).sum() > 0
    assert v["held_out_disconnected"]["measured_ms"][0] < 0.05
    line = held_out_line(v)
    assert f"on the {linked.sum()} connected ones ({(~linked).sum()} cells without" in line


@pytest.mark.parametrize("args, msg", [
    (["--column", "raspi5_ms"], "has no column 'raspi5_ms'; latency columns there: raspi4_ms"),
    (["--column", "raspi4_ms", "--train", "395"], "--train 395: need at least 10 training rows"),
    (["--column", "raspi4_ms", "--features", "op,depth"], "--features op,depth: must include 'op'"),
])
def test_profile_import_bad_input(tmp_path, args, msg):
    csv_path = _small_csv(tmp_path)
    r = subprocess.run([str(BIN / "profile"), "import", str(csv_path), *args, "--out", str(tmp_path / "luts")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 14 and msg in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "luts").exists()


def test_selection_factor_covers_the_network_a_search_picks():
    """Networks the objective likes best are under-predicted (the winner's curse): the plain conformal margin holds
    for a random network but not for the one a search selects; the selection factor grows it until the 19 networks
    ranked highest under the bound meet the target, which brings the selected one close to the share asked.
    Without such a correlation it stays 1."""
    rng = np.random.default_rng(0)

    def draw(n, curse=0.08):
        p, score = rng.uniform(1.0, 10.0, n), rng.normal(size=n)
        return p, score, p * (1.0 + 0.05 * rng.random(n) + curse * np.maximum(score, 0) ** 2)

    p, score, m = draw(3000)
    t = tightened_target(5.0, p, m, 0.95)
    sel = tightened_target(5.0, p, m, 0.95, scores=score)
    assert sel["conformal_margin"] == t["margin"] and sel["selection_factor"] > 1.1 and sel["selection_k"] == 19
    assert sel["searched_target"] == pytest.approx(5.0 / sel["margin"]) and sel["selection_met"] == 1.0
    # on new networks drawn alike, the one a search picks under each bound (the best-liked) meets the target
    met = {"plain": [], "grown": []}
    for _ in range(300):
        p2, s2, m2 = draw(1500)
        for key, bound in (("plain", t["searched_target"]), ("grown", sel["searched_target"])):
            under = np.flatnonzero(p2 <= bound)
            met[key].append(m2[under[np.argmax(s2[under])]] <= 5.0)
    assert np.mean(met["plain"]) < 0.7 and np.mean(met["grown"]) >= 0.8, {k: np.mean(v) for k, v in met.items()}
    p, score, m = draw(3000, curse=0.0)
    assert tightened_target(5.0, p, m, 0.95, scores=score)["selection_factor"] == 1.0


def test_selection_factor_stops_where_lowering_the_bound_no_longer_helps():
    """A best-liked network predicted below every bound but measured over the target (as the Pixel 3's disconnected
    cells, predicted at a 0.02 ms floor and measured at 8.9 ms) fails the count at any factor: the factor is then the
    smallest that reached the best count, not the cap, which left only worse networks under a 7.5x margin."""
    from profiler.conformal import selection_factor

    rng = np.random.default_rng(1)
    p = rng.uniform(1.0, 10.0, 2000)
    m = p * rng.uniform(0.95, 1.05, 2000)
    score = rng.normal(size=2000)
    p[0], m[0], score[0] = 0.02, 9.0, 10.0  # under every bound, ranked first, always over the target
    top = np.argsort(-score)[1:30]
    m[top[:3]] = 6.0  # three more of the best-liked miss the target unless the bound drops below ~4.5
    out = selection_factor(5.0, p, m, score, margin=1.05, confidence=0.95, max_factor=4.0)
    assert out["capped"] and out["met"] == 18 / 19
    assert 1.0 < out["factor"] < 4.0
    assert selection_factor(5.0, p, m, score, margin=1.05, confidence=0.95, max_factor=2.0)["factor"] <= out["factor"]


def test_calibration_pairs_are_out_of_fold(pi4):
    """The margin's pairs are training rows predicted by models fitted without them (issue 15): they fit worse than
    the final model fits its own training rows, as held-out predictions do, and they are not those predictions."""
    data, model, codes, y = pi4
    cal = data["validation"]["calibration"]
    p, m = np.array(cal["predicted_ms"]), np.array(cal["measured_ms"])
    train = split(len(y), 1000, 0)["train"]
    in_sample = model.predict_codes(codes[train])
    assert len(p) == len(train) and np.allclose(m, y[train], atol=1e-5)
    assert np.mean((p - m) ** 2) > np.mean((in_sample - y[train]) ** 2)
    assert not np.allclose(p, in_sample, rtol=1e-3)
