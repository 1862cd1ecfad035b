"""The SSH path against an emulated Raspberry Pi: arm64 Debian, its own Python, numpy and the aarch64 wheels of
ai-edge-litert, run by qemu-user behind its own sshd on loopback (tests/emulated/). Timings under qemu mean nothing:
these tests check that the agent runs there, that the LUT says it was emulated, resume and host keys; plus the
partial-LUT options (--blocks, --limit) and the emulated warnings on this machine's own runtime."""
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from profiler.lut import Lut, latest
from profiler.space import HARDCORE, BlockSpec
from tests.emulated.fixture import emulated_pi  # noqa: F401 (a fixture)
from tests.sshd import keygen

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# The 7x7 blocks are the cheapest to run under qemu; ten of them (the head, then inverted residuals).
CHEAP = "*@7"
FAST = ["--processes", "1", "--budget", "0.3", "--target-ci", "0.5", "--quiet"]


def needs_tflite_converter():
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")


def run(*argv, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=timeout)


def only_lut(out: Path) -> Lut:
    found = sorted(p for p in out.rglob("*.json") if not p.name.startswith("."))
    assert len(found) == 1, found
    return Lut.load(found[0])


# --- the emulated Pi -----------------------------------------------------------------------------------------------
@pytest.mark.emulated
@pytest.mark.ssh
def test_check_reports_aarch64_the_tflite_runtime_and_emulation(emulated_pi):
    r = run("profile", "--device", emulated_pi.name, "--devices", str(emulated_pi.inventory), "--check", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    print(r.stdout)
    lines = dict(line.split(None, 1) for line in r.stdout.strip().splitlines() if " " in line)
    assert "(aarch64)" in lines["cpu"]
    assert lines["runtime"].startswith("tflite: ai_edge_litert ")
    assert lines["python"].startswith("3.") and "/opt/lutnas-venv/bin/python" in lines["python"]
    assert lines["emulated"].startswith("yes: ")
    assert r.stdout.strip().endswith("ready")


@pytest.mark.emulated
@pytest.mark.ssh
@pytest.mark.slow
def test_profile_ten_blocks_with_tflite_writes_a_partial_lut_marked_emulated(emulated_pi, tmp_path):
    needs_tflite_converter()
    out = tmp_path / "luts"
    t0 = time.monotonic()
    r = run("profile", "--device", emulated_pi.name, "--devices", str(emulated_pi.inventory), "--out", str(out),
            "--blocks", CHEAP, "--limit", "10", *FAST)
    print(f"profile of 10 blocks on the emulated Pi: {time.monotonic() - t0:.0f} s; {r.stderr.strip()[-300:]}")
    assert r.returncode == 0, r.stderr
    lut = only_lut(out)
    assert r.stdout.strip().splitlines()[-1] == str(lut.path)
    assert len(lut.entries) == 10 and all(k.endswith("@7") for k in lut.entries)
    assert all(e["n"] == len(e["samples_ms"]) >= 1 and e["median_ms"] > 0 for e in lut.entries.values())
    rt, fp = lut.data["runtime"], lut.data["device"]["fingerprint"]
    assert rt["name"] == "tflite" and rt["threads"] == 4 and rt["version"].startswith("ai_edge_litert ")
    assert fp["machine"] == "aarch64" and fp["emulated"] is True and fp["emulation"]
    assert lut.emulated and lut.partial["entries"] == 10 and lut.partial["of"] == 159
    assert emulated_pi.agents() == []

    # validate and search name both caveats, then refuse a LUT that lacks blocks (exit 9)
    v = run("validate", "--device", emulated_pi.name, "--devices", str(emulated_pi.inventory), "--lut",
            str(lut.path), "--n", "4", "--quiet", timeout=120)
    s = run("search", "--lut", str(lut.path), "--target-ms", "100", "--quiet", timeout=120)
    for res in (v, s):
        assert res.returncode == 9, res.stderr
        assert "emulated 'pi4emu' (qemu-user): its timings are not a real device's" in res.stderr
        assert "is a partial LUT" in res.stderr and "without --limit/--blocks" in res.stderr


@pytest.mark.emulated
@pytest.mark.ssh
@pytest.mark.slow
def test_killed_emulated_agent_is_resumed_with_nothing_lost_or_repeated(emulated_pi, tmp_path, monkeypatch):
    needs_tflite_converter()
    import profiler.fleet as fleet
    from profiler.cli import profile_parser
    from profiler.inventory import resolve_device
    from profiler.runner import Method

    blocks = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e4_se1_i192_o192_s1_hs@7", "ir_k3_e6_se0_i192_o192_s1_hs@7",
              "ir_k5_e6_se1_i192_o192_s1_hs@7"]
    inv = tmp_path / "devices.toml"
    inv.write_text(emulated_pi.inventory.read_text() + "retries = 3\nbackoff_s = 0.5\n")
    out = tmp_path / "luts"
    yielded, killed = [], []
    real = fleet.SSHTransport

    class Recording(real):  # every entry that reaches the journal, across reconnections
        def run(self, manifest, args=()):
            for msg in super().run(manifest, args):
                if msg.get("type") == "entry":
                    yielded.append((msg["key"], msg["median_ms"]))
                yield msg

    monkeypatch.setattr(fleet, "SSHTransport", Recording)

    def saboteur():  # kill the agent on the device once some, not all, entries are in
        deadline = time.monotonic() + 600
        while not killed and time.monotonic() < deadline:
            if 1 <= len(yielded) < len(blocks) and emulated_pi.kill_agent():
                killed.append(len(yielded))
            time.sleep(0.01)

    t = threading.Thread(target=saboteur, daemon=True)
    t.start()
    # Adaptive stopping on a time budget only: the costlier blocks finish first, leaving the saboteur a window.
    method = Method(warmup_n=2, warmup_s=0.1, min_n=5, target_ci=0.0, budget_s=1.5, processes=1, rounds=0,
                    bootstrap=200)
    args = profile_parser().parse_args(["--device", emulated_pi.name, "--devices", str(inv), "--out", str(out),
                                        "--quiet"])
    rc = fleet.profile_fleet([resolve_device(emulated_pi.name, str(inv))], HARDCORE, args, method,
                             entries=[(b, BlockSpec.parse(b), None) for b in blocks])
    t.join(5)
    assert rc == 0
    assert killed, "the agent finished before it could be killed"
    lut = only_lut(out)
    assert sorted(lut.entries) == sorted(blocks)
    keys = [k for k, _ in yielded]
    assert sorted(keys) == sorted(blocks), "an entry was measured twice or lost"
    assert all(lut.entries[k]["median_ms"] == m for k, m in yielded)  # the LUT holds what arrived before the kill
    assert not list(lut.path.parent.glob(".journal-*"))
    assert emulated_pi.agents() == []
    print(f"agent killed after {killed[0]} of {len(blocks)} entries")


@pytest.mark.emulated
@pytest.mark.ssh
def test_changed_host_key_of_the_emulated_pi_is_refused_with_exit_10(emulated_pi, tmp_path):
    other = keygen(tmp_path / "other_host_key")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{emulated_pi.port} {' '.join(other.split()[:2])}\n")
    inv = tmp_path / "devices.toml"
    inv.write_text(emulated_pi.inventory.read_text().replace(str(emulated_pi.known_hosts), str(known)))
    for extra in ([], ["--trust-new-host"]):
        r = run("profile", "--device", emulated_pi.name, "--devices", str(inv), "--check", *extra, timeout=120)
        assert r.returncode == 10, r.stdout + r.stderr
        assert r.stderr.count("\n") == 1 and "CHANGED" in r.stderr and "ssh-keygen -R" in r.stderr
    assert known.read_text().count("ssh-ed25519") == 1  # nothing was recorded


# --- partial and emulated LUTs on this machine ---------------------------------------------------------------------
def test_blocks_and_limit_profile_a_partial_lut_that_validate_refuses(tmp_path):
    out = tmp_path / "luts"
    r = run("profile", "--device", "local", "--out", str(out), "--blocks", "ir_k3_e3_*@7", "--limit", "1", *FAST,
            timeout=300)
    assert r.returncode == 0, r.stderr
    lut = only_lut(out)
    assert list(lut.entries) == ["ir_k3_e3_se0_i192_o192_s1_hs@7"]
    assert lut.partial == {"entries": 1, "of": 159, "blocks_missing": len(HARDCORE.unique_blocks()) - 1}
    assert not lut.emulated
    v = run("validate", "--device", "local", "--lut", str(lut.path), "--n", "4", "--quiet", timeout=120)
    assert v.returncode == 9 and "is a partial LUT" in v.stderr, v.stderr
    assert "emulated" not in v.stderr


def test_blocks_matching_nothing_and_a_bad_limit_are_refused(tmp_path):
    for opts, message in ((["--blocks", "ir_k9_*"], "--blocks 'ir_k9_*' matches no entry"),
                          (["--limit", "0"], "--limit 0: give a number of entries >= 1")):
        r = run("profile", "--device", "local", "--out", str(tmp_path / "luts"), *opts, "--quiet", timeout=120)
        assert r.returncode == 14 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "luts").exists() or not list((tmp_path / "luts").rglob("*.json"))


def test_search_warns_in_one_line_on_a_whole_lut_measured_emulated(tmp_path):
    src = latest(REPO / "luts", "local", HARDCORE)
    data = json.loads(src.read_text())
    data["device"]["fingerprint"].update(emulated=True, emulation=["/proc/cpuinfo describes an x86 CPU under aarch64"])
    path = tmp_path / src.name
    path.write_text(json.dumps(data))
    r = run("search", "--lut", str(path), "--target-ms", "8", "--steps", "20", "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    warn = [line for line in r.stderr.splitlines() if "emulated" in line]
    assert warn == [f"search: warning: {path} was measured on an emulated 'local' (qemu-user): its timings are "
                    "not a real device's"]
