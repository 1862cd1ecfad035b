"""`validate` for real: whole networks measured through the agent, compared with the LUT's prediction."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from profiler.lut import Lut
from profiler.space import HARDCORE
from profiler.validate import fit_calibration, metrics, spread_sample

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def lut_path(tmp_path_factory):
    out = tmp_path_factory.mktemp("luts")
    # interleaved: a steady table's blocks (warm, alone) were seen to under-predict whole networks by 1.4-1.6x
    # (docs/BENCHMARKS.md, issue 18), which the 0.7-1.3 bound below would fail on; open question for the lead
    r = subprocess.run([str(BIN / "profile"), "--out", str(out), "--target-ci", "0.05", "--processes", "3", "--rounds", "4",
                        "--mode", "interleaved", "--quiet"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    return Path(r.stdout.strip().splitlines()[-1])


def test_validate_writes_report_and_plot(lut_path, tmp_path):
    report, png = tmp_path / "r.json", tmp_path / "v.png"
    # the default run re-measures the networks' blocks in 2 passes beside them: 30 min allowed on a crowded host
    r = subprocess.run([str(BIN / "validate"), "--lut", str(lut_path), "--out", str(lut_path.parents[2]), "--n", "6",
                        "--budget", "0.3", "--json", str(report), "--plot", str(png), "--same-run", "2", "--quiet"],
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    for k in ("n", "r2", "ratio", "mape_pct", "within_5_pct", "within_10_pct", "kendall_tau"):
        assert k in rep
    assert rep["n"] == 6 and len(rep["networks"]) == 6
    # the prediction is the LUT's: a loose but real check that blocks predict networks on this machine
    assert 0.7 < rep["ratio"] < 1.3
    drift = rep["device_vs_lut"]  # the networks' blocks, re-measured in the networks' workers (issue 18)
    # loose: this VM's host has moved the same blocks by up to 1.36x within minutes (docs/BENCHMARKS.md); the bound
    # catches unit or key mix-ups (1000x, a pair compared with a block), not the host
    assert 0.5 < drift["ratio"] < 2.0
    sr = rep["same_run"]  # every run predicts its networks from the entries they use, re-measured beside them
    from profiler.space import Arch

    used = {str(b) for n in rep["networks"] for b in Arch.parse(n["arch"]).blocks()}
    assert sr["scope"] == "used" and sr["phased"] and sr["cycles"] == 2 and len(sr["by_cycle"]) == 2
    assert sorted(drift["anchors"]) == sorted(used)
    n_pairs = sum(1 for k in json.loads(lut_path.read_text())["entries"] if k.startswith("pair:"))
    assert sr["entries_re_measured"] == len(used) + n_pairs < len(json.loads(lut_path.read_text())["entries"])
    assert all(n["predicted_same_run_ms"] > 0 for n in rep["networks"])
    assert "same run: " in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(lut_path.parent.glob(".journal-validate-*"))


def _variant(lut_path, tmp_path, **changes):
    data = json.loads(lut_path.read_text())
    for k, v in changes.items():
        data[k] = v
    p = tmp_path / "variant.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize("change, msg", [
    ({"device": {"name": "pi4", "fingerprint": {}}}, "measured on device 'pi4'; validate it with --device pi4"),
    ({"space": {"name": "hardcore-mbv3", "hash": "0123456789abcdef"}}, "hash 0123456789abcdef.*re-profile"),
])
def test_lut_of_another_device_or_space_is_refused(lut_path, tmp_path, change, msg):
    import re

    p = _variant(lut_path, tmp_path, **change)
    r = subprocess.run([str(BIN / "validate"), "--lut", str(p), "--n", "4", "--quiet"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 9
    assert re.search(msg, r.stderr), r.stderr


def test_spread_sample_covers_the_range():
    pred = lambda a: sum(sum(1 + c for c in st) for st in a.stages)  # noqa: E731 (a monotone stand-in)
    archs = spread_sample(HARDCORE, pred, 20, seed=0, candidates=2000)
    vals = sorted(pred(a) for a in archs)
    assert len(set(map(str, archs))) == 20
    assert vals[-1] - vals[0] > 0.6 * (5 * 4 * 12 - 5 * 2 * 1)  # most of the reachable range


def test_metrics_and_calibration_on_known_data():
    rng = np.random.default_rng(0)
    p = np.linspace(3, 9, 40)
    m = 0.95 * p + 0.1 + rng.normal(0, 0.01, 40)
    rep = metrics(p, m)
    assert rep["ratio"] < 0.98 and rep["kendall_tau"] > 0.95
    cal = fit_calibration(p, m)
    assert cal["a"] == pytest.approx(0.95, abs=0.01) and cal["improves"]
    # judged on a held-out half, kept as fitted on all the networks
    assert (cal["a"], cal["b"]) == pytest.approx(tuple(np.polyfit(p, m, 1)))
    assert cal["judged"]["fit_on"] == cal["held_out"] == 20 and cal["fit_on"] == 40
    assert cal["held_out_after"]["mape_pct"] < cal["held_out_before"]["mape_pct"]
    exact = metrics(p, p)
    assert exact["r2"] == 1.0 and exact["within_5_pct"] == 100.0


def test_calibration_is_folded_into_the_block_table(lut_path):
    from profiler.validate import predictor
    from profiler.space import random_arch

    lut = Lut.load(lut_path)
    arch = random_arch(np.random.default_rng(3))
    raw = predictor(lut)(arch)
    cal = lut.calibrated(0.9, 0.2, {})
    assert predictor(cal)(arch) == pytest.approx(0.9 * raw + 0.2)
    assert cal.data["calibration"]["calibrates"] == lut_path.name


def test_drift_tells_a_changed_device_from_the_lut(lut_path, tmp_path):
    """A LUT whose blocks all read half their time, as if the device had since become 2x slower: --drift measures
    the anchor blocks, reports about 2x, and says to re-profile; the unchanged LUT is not called stale."""
    data = json.loads(lut_path.read_text())
    for e in data["entries"].values():
        e["median_ms"] /= 2
    for b in (data.get("boundaries") or {}).values():  # the boundary corrections scale with the blocks
        b["delta_ms"] /= 2
    halved = tmp_path / "halved" / lut_path.name
    halved.parent.mkdir()
    halved.write_text(json.dumps(data))
    def drift(lut, out):
        r = subprocess.run([str(BIN / "validate"), "--lut", str(lut), "--out", str(tmp_path), "--drift",
                            "--anchors", "4", "--budget", "0.3", "--json", str(out), "--quiet"],
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        return r, json.loads(out.read_text())["device_vs_lut"]

    # The halved and the unchanged LUT checked in alternation, three pairs: the host's own state, which moves on this
    # VM (one pair of 0.3 s checks read 31 % apart, 2026-11-30), divides out of each pair's ratio; the median is kept.
    ratios = []
    for i in range(3):
        order = [(halved, "h"), (lut_path, "u")][:: 1 if i % 2 == 0 else -1]
        got = {tag: drift(lut, tmp_path / f"{tag}{i}.json") for lut, tag in order}
        ratios.append(got["h"][1]["ratio"] / got["u"][1]["ratio"])
        if i == 0:
            r, d = got["h"]
    assert len(d["anchors"]) == 4 and 1.5 < float(np.median(ratios)) < 2.7 and d["stale"], ratios
    assert f"runs its blocks at {d['ratio']:.3f}x the times in {halved}" in r.stderr
    assert "re-profile with: profile --device local" in r.stderr
    assert float(r.stdout.strip()) == pytest.approx(d["ratio"], abs=1e-4)



def test_processes_and_rounds_set_each_networks_samples(lut_path, tmp_path):
    """--processes 2 --rounds 3: every network pools 2 workers' 3 rounds (6 samples), whatever the LUT was measured
    with; --processes 1 (the agent's adaptive mode) is refused in one line."""
    out = tmp_path / "v.json"
    r = subprocess.run([str(BIN / "validate"), "--lut", str(lut_path), "--out", str(tmp_path), "--n", "4",
                        "--processes", "2", "--rounds", "3", "--same-run", "0", "--anchors", "2", "--quiet",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    nets = json.loads(out.read_text())["networks"]
    assert len(nets) == 4 and all(n["n"] == 6 for n in nets), nets
    bad = subprocess.run([str(BIN / "validate"), "--lut", str(lut_path), "--processes", "1"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "--processes" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def _halved_lut(lut_path, tmp_path):
    """The fixture's LUT with every number halved (a device that moved 2x since), measured with 4 workers (2 a
    pass of --cycles 2 or --same-run 2)."""
    data = json.loads(lut_path.read_text())
    data["method"]["processes"] = 4
    for e in data["entries"].values():
        e["median_ms"] /= 2
    for b in data["boundaries"].values():
        b["delta_ms"] /= 2
    halved = tmp_path / "halved.json"
    halved.write_text(json.dumps(data))
    return halved


def test_cycles_predict_from_the_lut_re_measured_beside_the_networks(lut_path, tmp_path):
    """--cycles 2: the LUT's entries are re-measured in two passes alternating with the networks', and the networks
    are predicted from that table too. Given a LUT whose numbers are all halved (a device that moved 2x since),
    the stored prediction is off by about 2x, the same-run one is not, and the same run sees the 2x in its blocks."""
    halved = _halved_lut(lut_path, tmp_path)
    report = tmp_path / "r.json"
    r = subprocess.run([str(BIN / "validate"), "--lut", str(halved), "--out", str(tmp_path), "--n", "5", "--cycles",
                        "2", "--budget", "0.3", "--json", str(report), "--plot", str(tmp_path / "v.png"), "--quiet"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    sr = rep["same_run"]
    assert sr["cycles"] == 2 and len(sr["by_cycle"]) == 2
    assert len(sr["blocks_vs_lut"]["anchors"]) == len(HARDCORE.unique_blocks())  # every block, pairs aside
    # against the halved table everything reads ~2x times the host's own drift since the fixture's profile (up to
    # 1.43x seen in CI), so the bounds are loose; the tight check is that both predictions come from one run's data:
    # stored / same-run prediction error = re-measured blocks / halved LUT blocks, up to weighting and boundaries
    assert sr["blocks_vs_lut"]["ratio"] > 1.3 and rep["device_vs_lut"]["stale"]
    assert 0.8 < rep["ratio"] / sr["ratio"] / sr["blocks_vs_lut"]["ratio"] < 1.25
    assert 0.7 < sr["ratio"] < 1.4 and abs(sr["ratio"] - 1) < abs(rep["ratio"] - 1)
    assert all(0.6 < c["ratio"] < 1.6 for c in sr["by_cycle"])
    assert all(n["predicted_same_run_ms"] > 0 for n in rep["networks"]) and len(rep["networks"]) == 5
    assert (tmp_path / "v.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "same run: " in r.stdout and "of the LUT's" in r.stdout and not list(tmp_path.glob("local/*/.journal-validate-*"))


def test_calibration_is_fitted_on_the_same_run_prediction_not_the_drift(lut_path, tmp_path):
    """--calibrate fits measured = a * predicted + b on the same-run prediction: the model's own error. Given a LUT
    whose numbers are all halved (a device that moved 2x since), a calibration fitted on the stored prediction would
    hold the 2x; this one, applied to the stored prediction, leaves it off by about 2x."""
    halved = _halved_lut(lut_path, tmp_path)
    report = tmp_path / "r.json"
    r = subprocess.run([str(BIN / "validate"), "--lut", str(halved), "--out", str(tmp_path), "--n", "8", "--budget",
                        "0.3", "--calibrate", "--json", str(report), "--quiet"], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    cal = rep["calibration"]
    assert cal["fitted_on"] == "same_run" and rep["same_run"]["phased"]
    meas = np.array([n["measured_ms"] for n in rep["networks"]])
    stored = np.array([n["predicted_ms"] for n in rep["networks"]])
    same = np.array([n["predicted_same_run_ms"] for n in rep["networks"]])
    # the host's drift since the fixture's profile moves both; the halving moves only the stored prediction
    assert rep["ratio"] > 1.4 * rep["same_run"]["ratio"]  # ratio: measured / predicted (a slope)
    assert np.mean(cal["a"] * stored + cal["b"]) < 0.8 * np.mean(cal["a"] * same + cal["b"])
    assert 0.6 < np.mean(cal["a"] * same + cal["b"]) / np.mean(meas) < 1.5


def test_cycles_that_leave_one_worker_per_pass_are_refused(lut_path, tmp_path):
    r = subprocess.run([str(BIN / "validate"), "--lut", str(lut_path), "--out", str(tmp_path), "--cycles", "2",
                        "--quiet"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 14 and len(r.stderr.strip().splitlines()) == 1  # BadInput
    assert "--cycles 2 leaves 1 worker(s) per pass of the 3" in r.stderr and "--cycles 1 or fewer" in r.stderr
    assert not list(tmp_path.glob("local/*/.journal-validate-*"))


def test_same_run_table_carries_the_stored_calibration_applied_only_when_asked():
    from profiler.space import random_arch
    from profiler.validate import predictor, same_run_lut

    root = Path(__file__).resolve().parents[1] / "luts/local/hardcore-mbv3"
    lut = Lut.load(root / "20261129T223408Z-onnxruntime-t1-b1.json")
    cal = lut.calibrated(0.9, 0.25, {})
    moved = {k: dict(v, median_ms=1.1 * v["median_ms"]) for k, v in lut.entries.items()}  # the device 10 % slower
    table = same_run_lut(cal, moved)
    plain, kept = predictor(table, calibrated=False), predictor(table)
    rng = np.random.default_rng(0)
    for _ in range(5):
        a = random_arch(rng, HARDCORE)
        assert kept(a) == pytest.approx(0.9 * plain(a) + 0.25, rel=1e-9)  # a x prediction + b, on this run's table
        assert plain(a) == pytest.approx(1.1 * predictor(lut)(a), rel=1e-6)  # boundaries refitted: scale 1.1 too
