"""`search --confidence` on the committed HardCoRe LUT with the residuals of its committed validate report."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LUT = ROOT / "luts" / "local" / "hardcore-mbv3" / "20261122T232635Z-onnxruntime-t1-b1-cal-20261122T233124Z.json"
REPORT = ROOT / "docs" / "validate-local-heldout.json"  # 50 networks validated against that LUT


def run(*args):
    return subprocess.run([str(BIN / "search"), "--lut", str(LUT), "--steps", "50", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_confidence_tightens_by_the_report_residuals(tmp_path):
    out = tmp_path / "r.json"
    r = run("--target-ms", "4", "--confidence", "0.9", "--calibration", REPORT, "--json", out)
    assert r.returncode == 0, r.stderr
    row = json.loads(out.read_text())["results"][0]
    c = row["confidence"]
    nets = json.loads(REPORT.read_text())["networks"]
    ratios = sorted(n["measured_ms"] / n["predicted_ms"] for n in nets)
    assert c["calibration_n"] == 50 and abs(c["margin"] - ratios[45]) < 1e-12  # ⌈51·0.9⌉ = 46th smallest
    assert abs(c["searched_target"] * c["margin"] - 4.0) < 1e-9
    assert row["predicted_ms"] <= c["searched_target"] + 1e-9
    assert "objective_without_margin" in c and "confidence 0.9 for 4 ms" in r.stdout


def test_confidence_errors():
    r = run("--target-ms", "4", "--confidence", "0.99", "--calibration", REPORT)
    assert r.returncode == 14 and "needs at least 99 calibration networks; have 50" in r.stderr
    r = run("--target-ms", "4", "--confidence", "0.9")
    assert r.returncode == 14 and "has no calibration data" in r.stderr and str(LUT) in r.stderr
    r = run("--target-ms", "4", "--calibration", REPORT)
    assert r.returncode == 14 and "--calibration is used with --confidence" in r.stderr
