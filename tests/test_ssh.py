"""Devices over SSH, against a real OpenSSH sshd on loopback (tests/sshd.py): TFLite and ONNX Runtime presets,
faults mid-run, host keys, hostile work directories, several devices at once; plus the inventory file's checks."""
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from profiler.errors import BadInput, ConnectionFailed, HostKeyError
from profiler.inventory import load_inventory, resolve_device
from profiler.lut import Lut
from profiler.runner import profile
from profiler.space import HARDCORE
from tests.conftest import BIN, ORT_BLOCKS, TFLITE_BLOCKS, entries, fast, inventory, lut_of, run_fleet
from tests.sshd import Sshd, keygen, keygen_fingerprint

# --- presets over SSH ----------------------------------------------------------------------------------------------
@pytest.mark.ssh
def test_pi4_tflite_lut_over_ssh_covers_the_same_keys_as_local(tmp_path, sshd, capsys):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    work = tmp_path / "remote-work"
    inv = inventory(tmp_path, sshd.device_toml("pi4", "pi4", work))
    out = tmp_path / "luts"
    assert run_fleet(inv, out, ["pi4"], TFLITE_BLOCKS) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    remote = lut_of(out, "pi4")
    assert printed[-1] == str(remote.path)
    local_path, _ = profile(resolve_device("local"), HARDCORE, resolve_device("local").runtime_settings("tflite"),
                            1, fast(), out, progress=False, entries=entries(TFLITE_BLOCKS))
    local = Lut.load(local_path)
    assert set(remote.data["entries"]) == set(local.data["entries"]) == set(TFLITE_BLOCKS)
    rt = remote.data["runtime"]
    assert rt["name"] == "tflite" and rt["threads"] == 4 and "ai_edge_litert" in rt["version"]
    assert all(e["n"] >= 10 and e["median_ms"] > 0 for e in remote.data["entries"].values())
    assert list(work.iterdir()) == []  # the run directory was removed


@pytest.mark.ssh
@pytest.mark.parametrize("preset, runtime, threads", [("pi4", "tflite", 4), ("xeon", "onnxruntime", 1)])
def test_cli_profile_over_ssh_covers_every_key_of_the_committed_local_lut(tmp_path, sshd, capsys, preset, runtime,
                                                                        threads):
    """The whole space through the console-script path (``profile --device NAME --devices FILE``) with the preset's
    own runtime, and a loose stopping rule: pi4 converts all 159 entries to .tflite on the host (about 5 minutes
    cold here, cached afterwards) and times them with TFLite over SSH; xeon does the same with ONNX Runtime."""
    if runtime == "tflite":
        pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    from profiler.cli import profile_main
    from profiler.lut import latest

    work = tmp_path / "remote-work"
    inv = inventory(tmp_path, sshd.device_toml(preset, preset, work))
    out = tmp_path / "luts"
    rc = profile_main(["--device", preset, "--devices", str(inv), "--out", str(out), "--quiet", "--processes", "1",
                       "--budget", "0.05", "--target-ci", "0.5"])  # one adaptive process: no fixed rounds
    assert rc == 0
    remote = lut_of(out, preset)
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(remote.path)
    committed = Lut.load(latest(Path(__file__).resolve().parents[1] / "luts", "local", HARDCORE))
    assert set(remote.data["entries"]) == set(committed.data["entries"])
    blocks = {str(b) for b in HARDCORE.unique_blocks()}
    assert blocks <= set(remote.data["entries"])  # every unique block, plus the boundary pairs
    assert all(k in blocks or k.startswith("pair:") for k in remote.data["entries"])
    assert all(e["n"] == len(e["samples_ms"]) >= 1 and e["median_ms"] > 0 for e in remote.data["entries"].values())
    rt = remote.data["runtime"]
    assert rt["name"] == runtime and rt["threads"] == threads
    assert ("ai_edge_litert" if runtime == "tflite" else "onnxruntime") in rt["version"]
    assert remote.data["device"]["name"] == preset and remote.data["device"]["fingerprint"]["hostname"]
    assert list(work.iterdir()) == []  # the run directory was removed


@pytest.mark.ssh
def test_two_sshd_devices_profiled_concurrently_with_onnxruntime(tmp_path):
    a = Sshd(tmp_path / "a").start()
    b = Sshd(tmp_path / "b").start()
    try:
        inv = inventory(tmp_path, a.device_toml("xeon-a", "xeon", tmp_path / "wa"),
                        b.device_toml("xeon-b", "xeon", tmp_path / "wb"))
        out = tmp_path / "luts"
        seen = {}
        stop = threading.Event()

        def watch():  # both devices must be running their agents at the same moment
            while not stop.is_set():
                if a.agents() and b.agents():
                    seen["both"] = True
                time.sleep(0.02)

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        blocks = ORT_BLOCKS[:3]
        assert run_fleet(inv, out, ["xeon-a", "xeon-b"], blocks, fast(budget_s=0.6, target_ci=0.0, max_n=300)) == 0
        stop.set()
        assert seen.get("both"), "the two devices were not measured concurrently"
        for name in ("xeon-a", "xeon-b"):
            lut = lut_of(out, name)
            assert set(lut.data["entries"]) == set(blocks)
            assert lut.data["runtime"]["name"] == "onnxruntime" and lut.data["runtime"]["threads"] == 1
    finally:
        a.stop()
        b.stop()


@pytest.mark.ssh
def test_one_failing_device_does_not_stop_the_other(tmp_path, sshd, capsys):
    dead_port = Sshd(tmp_path / "dead")  # configured, never started: connection refused
    inv = inventory(tmp_path, sshd.device_toml("good", "xeon", tmp_path / "w"),
                    dead_port.device_toml("gone", "xeon", tmp_path / "w2", retries=1, backoff_s=0.1))
    status = run_fleet(inv, tmp_path / "luts", ["good", "gone"], ORT_BLOCKS[:1])
    cap = capsys.readouterr()
    assert status != 0
    assert lut_of(tmp_path / "luts", "good")
    assert cap.out.strip().splitlines()[-1].endswith(".json")
    assert "device 'gone' FAILED" in cap.err and "cannot connect" in cap.err


# --- faults mid-run ------------------------------------------------------------------------------------------------
@pytest.mark.ssh
def test_cut_connection_killed_agent_and_restarted_sshd_lose_and_repeat_nothing(tmp_path, sshd, monkeypatch):
    """Three faults in one run: sshd's session process killed, the agent killed, sshd stopped and restarted.
    Every block ends in the LUT once and no result reaches the journal twice."""
    import profiler.fleet as fleet

    inv = inventory(tmp_path, sshd.device_toml("xeon", "xeon", tmp_path / "w", retries=8, backoff_s=0.2))
    out = tmp_path / "luts"
    yielded, faults = [], []
    real = fleet.SSHTransport

    class Recording(real):  # what reaches the runner (and so the journal), across every reconnection
        def run(self, manifest, args=()):
            for msg in super().run(manifest, args):
                if msg.get("type") == "entry":
                    yielded.append((msg["key"], msg.get("worker", 0)))
                yield msg

    monkeypatch.setattr(fleet, "SSHTransport", Recording)

    def saboteur():
        plan = [("session", sshd.kill_session), ("agent", sshd.kill_agent), ("sshd", None)]
        deadline = time.monotonic() + 60
        while plan and time.monotonic() < deadline:
            if len(yielded) > len(faults) and len(yielded) < len(ORT_BLOCKS) and sshd.agents():
                what, act = plan[0]
                if act is None:
                    sshd.stop()
                    time.sleep(0.5)
                    sshd.start()
                    ok = True
                else:
                    ok = act()
                if ok:
                    faults.append(what)
                    plan.pop(0)
            time.sleep(0.01)

    t = threading.Thread(target=saboteur, daemon=True)
    t.start()
    # Entries finish at different times (a fixed time budget, so the costly blocks finish first), leaving the
    # saboteur windows between results.
    method = fast(target_ci=0.0, budget_s=0.25, max_n=2500)
    assert run_fleet(inv, out, ["xeon"], ORT_BLOCKS, method) == 0
    t.join(5)
    assert faults[:2] == ["session", "agent"], faults  # and usually "sshd" too (timing allowing)
    lut = lut_of(out, "xeon")
    assert sorted(lut.data["entries"]) == sorted(ORT_BLOCKS)
    assert len(yielded) == len(set(yielded)), "an entry was measured twice"
    assert not list(lut.path.parent.glob(".journal-*"))
    print("faults injected:", faults)


@pytest.mark.ssh
def test_silent_agent_is_killed_after_entry_timeout(tmp_path, sshd):
    from profiler.ssh import AgentTimeout

    inv = inventory(tmp_path, sshd.device_toml("xeon", "xeon", tmp_path / "w", entry_timeout=1.0, retries=0))
    t0 = time.monotonic()
    with pytest.raises(AgentTimeout, match="printed nothing for 1 s"):
        run_fleet(inv, tmp_path / "luts", ["xeon"], ORT_BLOCKS[:1], fast(warmup_s=30.0))
    assert time.monotonic() - t0 < 20
    time.sleep(0.3)
    assert sshd.agents() == []  # killed on the device, not left running


# --- host keys -----------------------------------------------------------------------------------------------------
@pytest.mark.ssh
def test_unknown_host_key_is_refused_with_its_fingerprint_then_trusted_and_recorded(tmp_path, sshd, capsys):
    from profiler.check import check_remote

    sshd.known_hosts.write_text("")
    inv = inventory(tmp_path, sshd.device_toml("pi4", "pi4", tmp_path / "w"))
    dev = resolve_device("pi4", str(inv))
    fp = keygen_fingerprint(sshd.host_key.with_name(sshd.host_key.name + ".pub"))
    with pytest.raises(HostKeyError) as err:
        check_remote(dev, dev.runtime_settings())
    assert fp in str(err.value) and "--trust-new-host" in str(err.value)
    assert sshd.known_hosts.read_text() == ""
    assert check_remote(dev, dev.runtime_settings(), trust_new_host=True) == 0
    assert f"[127.0.0.1]:{sshd.port} ssh-ed25519" in sshd.known_hosts.read_text()
    assert check_remote(dev, dev.runtime_settings()) == 0  # now known: no flag needed
    assert "ready" in capsys.readouterr().out


@pytest.mark.ssh
def test_changed_host_key_is_refused_even_with_trust_new_host(tmp_path, sshd):
    from profiler.check import check_remote

    other = keygen(tmp_path / "other_host_key")
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {' '.join(other.split()[:2])}\n")
    inv = inventory(tmp_path, sshd.device_toml("pi4", "pi4", tmp_path / "w"))
    dev = resolve_device("pi4", str(inv))
    for trust in (False, True):
        with pytest.raises(HostKeyError, match="CHANGED") as err:
            check_remote(dev, dev.runtime_settings(), trust_new_host=trust)
        assert "ssh-keygen -R" in str(err.value)
    assert sshd.known_hosts.read_text().count("ssh-ed25519") == 1  # nothing was recorded


@pytest.mark.ssh
def test_cli_exit_status_for_unknown_host_key(tmp_path, sshd):
    sshd.known_hosts.write_text("")
    inv = inventory(tmp_path, sshd.device_toml("pi4", "pi4", tmp_path / "w"))
    r = subprocess.run([str(BIN / "profile"), "--device", "pi4", "--devices", str(inv), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 10, r.stderr
    assert r.stderr.count("\n") == 1 and "--trust-new-host" in r.stderr
    r = subprocess.run([str(BIN / "profile"), "--device", "pi4", "--devices", str(inv), "--check",
                        "--trust-new-host"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ai_edge_litert" in r.stdout and r.stdout.strip().endswith("ready")


# --- quoting, config, check ----------------------------------------------------------------------------------------
@pytest.mark.ssh
def test_workdir_with_spaces_quotes_and_semicolons_is_safe(tmp_path, sshd):
    canary = tmp_path / "PWNED"
    evil = tmp_path / f"work dir; touch {canary} ; 'q' \"dq\" $(touch {canary}2) `touch {canary}3`"
    inv = inventory(tmp_path, sshd.device_toml("xeon", "xeon", evil))
    out = tmp_path / "luts"
    assert run_fleet(inv, out, ["xeon"], ORT_BLOCKS[:1]) == 0
    assert set(lut_of(out, "xeon").data["entries"]) == {ORT_BLOCKS[0]}
    assert not list(tmp_path.glob("PWNED*")), "a path reached the remote shell unquoted"
    assert evil.is_dir() and list(evil.iterdir()) == []  # used as given, and the run directory removed


@pytest.mark.ssh
def test_ssh_config_host_alias(tmp_path, sshd):
    from profiler.check import check_remote

    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host lab-pi\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
                   f"  IdentityFile {sshd.user_key}\n  UserKnownHostsFile {sshd.known_hosts}\n")
    inv = inventory(tmp_path, f'[devices.pi4]\nhost = "lab-pi"\npreset = "pi4"\npython = "{sys.executable}"\n'
                              f'workdir = "{tmp_path / "w"}"\nssh_config = "{cfg}"\n')
    dev = resolve_device("pi4", str(inv))
    assert check_remote(dev, dev.runtime_settings()) == 0


@pytest.mark.ssh
def test_check_names_the_exact_pip_command_for_the_devices_python(tmp_path, sshd, capsys):
    from profiler.check import check_remote

    bare = tmp_path / "bare-python"  # the same interpreter without site-packages: no numpy, no runtimes
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    bare.chmod(0o755)
    inv = inventory(tmp_path, sshd.device_toml("pi4", "pi4", tmp_path / "w", python=str(bare)),
                    sshd.device_toml("nopy", "pi4", tmp_path / "w", python="/nonexistent/python3"))
    dev = resolve_device("pi4", str(inv))
    assert check_remote(dev, dev.runtime_settings()) == 5
    assert f"{bare} -m pip install numpy" in capsys.readouterr().out
    nopy = resolve_device("nopy", str(inv))
    assert check_remote(nopy, nopy.runtime_settings()) == 5
    assert "python      MISSING" in capsys.readouterr().out


# --- the inventory file (no SSH) -----------------------------------------------------------------------------------
def test_inventory_presets_overrides_and_search_order(tmp_path, monkeypatch):
    f = tmp_path / "fleet.toml"
    f.write_text('[defaults]\nuser = "pi"\n\n[devices.pi4]\nhost = "pi.local"\npreset = "pi4"\nthreads = 2\n\n'
                 '[devices.phone]\nhost = "phone"\npreset = "phone"\nbenchmark_model = "/data/bm"\n\n'
                 '[devices.jet]\nhost = "jet"\npreset = "jetson"\nbatch = 8\n')
    devs = load_inventory(str(f))
    assert devs["pi4"].runtime_settings()["threads"] == 2 and devs["pi4"].runtime_settings()["name"] == "tflite"
    assert devs["pi4"].user == "pi" and devs["pi4"].port == 22
    assert devs["phone"].port == 8022 and devs["phone"].runtime_settings()["benchmark_model"] == "/data/bm"
    assert devs["jet"].preset.batch == 8 and devs["jet"].preset.providers[0] == "TensorrtExecutionProvider"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LUTNAS_DEVICES", str(f))
    assert set(load_inventory()) == {"pi4", "phone", "jet"}
    monkeypatch.delenv("LUTNAS_DEVICES")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_inventory() == {}
    (tmp_path / "devices.toml").write_text('[devices.x]\nhost = "x"\n')
    assert set(load_inventory()) == {"x"}


@pytest.mark.parametrize("body, message", [
    ('[devices.pi4]\nhost = "h"\nthreds = 4\n', "unknown key devices.pi4.'threds'"),
    ('[devices.pi4]\nhost = "h"\nport = "22"\n', "devices.pi4.port = '22' should be an integer"),
    ('[devices.pi4]\nhost = "h"\npreset = "pi5"\n', "devices.pi4.preset = 'pi5' is not a preset"),
    ('[devices.pi4]\nuser = "u"\n', "devices.pi4 has no host"),
    ('[devices.pi4]\nhost = "h"\nruntime = "tensorrt"\n', "devices.pi4.runtime = 'tensorrt' is not a runtime"),
    ('[devices.pi4\nhost = "h"\n', "not valid TOML"),
])
def test_bad_inventory_is_one_line_naming_file_and_key(tmp_path, body, message):
    f = tmp_path / "devices.toml"
    f.write_text(body)
    with pytest.raises(BadInput) as err:
        load_inventory(str(f))
    assert str(f) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_missing_inventory_file_and_unknown_device(tmp_path):
    with pytest.raises(BadInput, match="no such file"):
        load_inventory(str(tmp_path / "nope.toml"))
    f = tmp_path / "devices.toml"
    f.write_text('[devices.pi4]\nhost = "h"\n')
    from profiler.errors import UnknownDevice

    with pytest.raises(UnknownDevice, match="known: local \\(built in\\), pi4"):
        resolve_device("jetson", str(f))


def test_unreachable_host_is_a_connection_error(tmp_path):
    from profiler.check import check_remote
    from tests.sshd import free_port

    f = tmp_path / "devices.toml"
    f.write_text(f'[devices.d]\nhost = "127.0.0.1"\nport = {free_port()}\nknown_hosts = "{tmp_path}/kh"\n'
                 f'ssh_config = "{tmp_path}/none"\nconnect_timeout = 2\n')
    dev = resolve_device("d", str(f))
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        check_remote(dev, dev.runtime_settings())
