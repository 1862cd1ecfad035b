"""Trust warnings (issue 18): a LUT with many flagged entries, or one measured on another machine, says so in one
line from `search`, `validate` and the Python API; `latest` prefers a LUT with few flagged entries."""
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from profiler.lut import Lut, latest, lut_dir, pick_trusted
from profiler.space import HARDCORE
from profiler.trust import LutTrustWarning, device_warning, fingerprint_diff, flagged_warning

BIN = Path(sys.executable).parent
LUTS = Path(__file__).resolve().parent.parent / "luts" / "local" / "hardcore-mbv3"
# 154 of its 159 entries missed their CI target (ci_not_reached), all 159 have dispersion flags
FLAGGED = LUTS / "20261123T132532Z-onnxruntime-t1-b1-cal-20261123T133411Z.json"
# 138 of its 159 entries have dispersion flags only (unstable_std, outliers): their medians reached the CI target
DISPERSED = LUTS / "20261122T232635Z-onnxruntime-t1-b1-cal-20261122T233124Z.json"


def variant(tmp_path, name="lut.json", clean=False, **fingerprint):
    data = json.loads(FLAGGED.read_text())
    if clean:
        for e in data["entries"].values():
            e["flags"] = []
    data["device"]["fingerprint"].update(fingerprint)
    data["method"].update(processes=2, rounds=3)  # keeps a measuring test short
    p = tmp_path / name
    p.write_text(json.dumps(data))
    return p


def test_flagged_share_above_ten_percent_warns_and_below_does_not(tmp_path):
    lut = Lut.load(FLAGGED)
    line = flagged_warning(lut)
    assert line and "154 of 159 entries flagged" in line and "ci_not_reached 154" in line and "\n" not in line
    assert flagged_warning(Lut.load(DISPERSED)) is None  # flags on single calls, medians within their CI target
    data = json.loads(FLAGGED.read_text())
    keys = sorted(data["entries"])
    for i, k in enumerate(keys):  # 15 of 159 in doubt (9.4 %): no warning; 16 (10.1 %): a warning
        data["entries"][k]["flags"] = ["outliers", "ci_not_reached"] if i < 15 else ["unstable_std"]
    assert flagged_warning(Lut(data)) is None
    data["entries"][keys[15]]["flags"] = ["ci_not_reached"]
    assert "16 of 159 entries flagged" in flagged_warning(Lut(data))


def test_fingerprint_compares_the_machine_not_its_state():
    stored = {"cpu_model": "AMD EPYC", "cpu_count": 2, "machine": "x86_64", "runtime": "onnxruntime 1.32.0",
              "loadavg": [0.1, 0.1, 0.1], "temperatures_c": {"cpu": 40.0}, "hostname": "vm", "freq_mhz": {}}
    now = dict(stored, loadavg=[3.0, 2.0, 1.0], temperatures_c={"cpu": 71.0}, hostname="vm2", pinned_cores=[1])
    assert fingerprint_diff(stored, now) == []
    assert fingerprint_diff(stored, dict(now, cpu_model="Intel Xeon")) == [("cpu_model", "AMD EPYC", "Intel Xeon")]
    assert fingerprint_diff(stored, dict(now, runtime="onnxruntime 1.20.1"))[0][0] == "runtime"
    assert fingerprint_diff(stored, {"cpu_model": "AMD EPYC"}) == []  # parts an old agent lacks: no claim


def test_latest_prefers_a_lut_with_few_flagged_entries_and_says_why(tmp_path):
    d = lut_dir(tmp_path, "local", HARDCORE)
    d.mkdir(parents=True)
    old = variant(d, "20261101T000000Z-onnxruntime-t1-b1.json", clean=True)
    new = variant(d, "20261105T000000Z-onnxruntime-t1-b1.json")
    err = io.StringIO()
    assert pick_trusted([old, new], err) == old
    assert "using 20261101T000000Z-onnxruntime-t1-b1.json" in err.getvalue() and "newer ones have more" in err.getvalue()
    assert latest(tmp_path, "local", HARDCORE) == old
    assert latest(tmp_path, "local", HARDCORE, trusted=False) == new  # make demo: the newest, then its drift check
    old.write_text(new.read_text())  # now every LUT is flagged: the newest, and a note saying so
    err = io.StringIO()
    assert pick_trusted([old, new], err) == new
    assert len(err.getvalue().strip().splitlines()) == 1 and "every LUT in" in err.getvalue()


def test_python_api_warns_about_a_flagged_lut(tmp_path):
    from search.cli import capacity_objective
    from search.problem import solve

    with pytest.warns(LutTrustWarning, match="154 of 159 entries flagged"):
        solve(Lut.load(FLAGGED), 8.0, capacity_objective(HARDCORE), steps=5)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", LutTrustWarning)
        solve(Lut.load(variant(tmp_path, clean=True)), 8.0, capacity_objective(HARDCORE), steps=5)


def test_search_warns_once_about_a_flagged_lut(tmp_path):
    for lut, expect in ((FLAGGED, 1), (variant(tmp_path, clean=True), 0)):
        out = tmp_path / "r.json"
        r = subprocess.run([str(BIN / "search"), "--lut", str(lut), "--target-ms", "8", "--steps", "20", "--json",
                            str(out)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        lines = [x for x in r.stderr.splitlines() if "entries flagged" in x]
        assert len(lines) == expect, r.stderr
        assert len(json.loads(out.read_text())["trust_warnings"]) == expect


def test_validate_warns_when_the_device_is_not_the_luts_machine(tmp_path):
    """The LUT's fingerprint says another CPU: validate (here --drift, the cheapest measuring run) says so in one
    line; the same LUT with this machine's fingerprint does not."""
    here = json.loads(subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "agents" /
                                                          "lutnas_agent.py"), "--check"],
                                     capture_output=True, text=True).stdout.splitlines()[0])
    stable = {k: here[k] for k in ("cpu_model", "cpu_count", "machine", "runtime")}
    for name, fp, expect in (("other.json", dict(stable, cpu_model="Intel Xeon Platinum 8375C"), 1),
                             ("same.json", dict(stable, loadavg=[9.0, 9.0, 9.0]), 0)):
        lut = variant(tmp_path, name, clean=True, **fp)
        r = subprocess.run([str(BIN / "validate"), "--lut", str(lut), "--out", str(tmp_path / "luts"), "--drift",
                            "--anchors", "2", "--budget", "0.2", "--quiet", "--json", str(tmp_path / "r.json")],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        lines = [x for x in r.stderr.splitlines() if "another machine" in x]
        assert len(lines) == expect, r.stderr
        if expect:
            assert "cpu_model 'Intel Xeon Platinum 8375C' in the LUT" in lines[0] and "profile this one" in lines[0]
        assert len(json.loads((tmp_path / "r.json").read_text())["trust_warnings"]) == expect


def test_device_warning_names_what_differs():
    lut = Lut.load(FLAGGED)
    fp = dict(lut.data["device"]["fingerprint"])
    assert device_warning(lut, fp, "local") is None
    line = device_warning(lut, dict(fp, cpu_count=8, machine="aarch64"), "pi4")
    assert "device 'pi4'" in line and "cpu_count 2 in the LUT, 8 now" in line and "machine 'x86_64'" in line
