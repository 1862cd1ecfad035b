"""Bad input to `profile`, `validate` and `search`, as a new user gives it: one line on stderr naming the file, key or
option, the exit code the README documents, no traceback, nothing written.

The commands run in-process through their ``main(argv)`` (the console scripts call the same functions), so the table
stays quick; `search` Ctrl-C runs as a real process to get a real SIGINT.
"""
import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from profiler.cli import profile_main, validate_main
from search.cli import main as search_main

BIN = Path(sys.executable).parent
LUT = (Path(__file__).resolve().parent.parent / "luts" / "local" / "hardcore-mbv3" /
       "20261122T232635Z-onnxruntime-t1-b1-cal-20261122T233124Z.json")
DATA = json.loads(LUT.read_text())
BLOCK = "ir_k3_e3_se0_i16_o24_s2_re@112"  # a block of the space (first block of stage 1)
# exit codes, as listed in the README
USAGE, UNKNOWN_DEVICE, UNKNOWN_RUNTIME, NOT_WRITABLE, BAD_LUT, INFEASIBLE, BAD_INPUT = 2, 3, 4, 6, 9, 13, 14


def mutate(fn):
    d = copy.deepcopy(DATA)
    fn(d)
    return d


def _set(path, value):
    def fn(d):
        *parents, last = path
        for p in parents:
            d = d[p]
        d[last] = value
    return fn


def _negate_all(d):
    for e in d["entries"].values():
        e["median_ms"] = -e["median_ms"]


def _drop(key):
    return lambda d: d.pop(key)


# name -> (mutation of the committed LUT's JSON, or raw text), message part
LUTS = {
    "no-space": (_drop("space"), "'space' is None, should be a table"),
    "space-string": (_set(["space"], "hardcore-mbv3"), "'space' is 'hardcore-mbv3'"),
    "entries-list": (_set(["entries"], []), "'entries' is [], should be a table"),
    "unknown-space": (_set(["space", "name"], "nb999"), "unknown space 'nb999'"),
    "median-nan": (_set(["entries", BLOCK, "median_ms"], float("nan")), "median_ms = nan"),
    "median-inf": (_set(["entries", BLOCK, "median_ms"], float("inf")), "median_ms = inf"),
    "median-string": (_set(["entries", BLOCK, "median_ms"], "1.2"), "median_ms = '1.2'"),
    "median-negative": (_set(["entries", BLOCK, "median_ms"], -0.5), "median_ms = -0.5"),
    "median-zero": (_set(["entries", BLOCK, "median_ms"], 0), "median_ms = 0 "),
    "median-bool": (_set(["entries", BLOCK, "median_ms"], True), "median_ms = True"),
    "all-negative": (_negate_all, "should be a positive finite number"),
    "cal-a-string": (_set(["calibration", "a"], "1"), "calibration.a = '1'"),
    "cal-a-negative": (_set(["calibration", "a"], -1), "calibration.a = -1 should be positive"),
    "cal-b-nan": (_set(["calibration", "b"], float("nan")), "calibration.b = nan"),
    "cal-b-below-smallest": (_set(["calibration", "b"], -100.0), "predicts -9"),
    "cal-list": (_set(["calibration"], [1, 0]), "calibration is [1, 0]"),
    "boundary-too-large": (_set(["boundaries", "c24r56", "delta_ms"], 50.0), "boundary 'c24r56' delta_ms = 50.0"),
    "boundary-string": (_set(["boundaries", "c24r56", "delta_ms"], "0.1"), "delta_ms = '0.1'"),
    "boundaries-list": (_set(["boundaries"], []), "boundaries is []"),
    "entry-missing": (lambda d: d["entries"].pop(BLOCK), f"blocks are not measured (e.g. {BLOCK!r})"),
    "entry-not-table": (_set(["entries", BLOCK], 1.5), f"entry {BLOCK!r} is 1.5"),
    "entries-empty": (_set(["entries"], {}), "has no entries"),
    "samples-nan": (_set(["entries", BLOCK, "samples_ms"], [1.0, float("nan")]), "samples_ms should be a list"),
    "std-negative": (_set(["entries", BLOCK, "std_ms"], -1.0), "std_ms = -1.0"),
    "key-garbage": (_set(["entries", "conv_k3@x"], {"median_ms": 1.0}), "entry key 'conv_k3@x' is not a block"),
    "pair-three": (_set(["entries", f"pair:{BLOCK}+{BLOCK}+{BLOCK}"], {"median_ms": 1.0}), "is not a block"),
    "batch-zero": (_set(["batch"], 0), "batch = 0 should be an integer >= 1"),
    "batch-string": (_set(["batch"], "1"), "batch = '1'"),
    "no-runtime": (_drop("runtime"), "'runtime' is None"),
    "no-device-name": (_set(["device"], {"fingerprint": {}}), "device.name = None"),
    "fingerprint-null": (_set(["device", "fingerprint"], None), "device.fingerprint = None"),  # test_properties
    "method-string": (_set(["method", "processes"], "x"), "method.processes = 'x'"),
    "space-hash": (_set(["space", "hash"], "0123456789abcdef"), "hash 0123456789abcdef"),
    "schema-99": (_set(["schema_version"], 99), "schema_version 99"),
    "schema-list": (_set(["schema_version"], []), "schema_version [], not a version number"),  # test_properties
    "schema-float": (_set(["schema_version"], 1.5), "schema_version 1.5, not a version number"),
    "no-schema": (_drop("schema_version"), "not a lutnas LUT"),
    "truncated": (json.dumps(DATA)[:5000], "not readable JSON"),
    "array": ("[1, 2, 3]", "not a lutnas LUT"),
    "empty-file": ("", "not readable JSON"),
}


def write_lut(tmp_path, name):
    spec = LUTS[name][0]
    p = tmp_path / f"{name}.json"
    p.write_text(spec if isinstance(spec, str) else json.dumps(mutate(spec)))
    return p


def call(main, argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def files(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file())  # (an empty folder made is no output)


def check(code, out, err, want_code, msg, before, root):
    lines = err.strip().splitlines()
    assert code == want_code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "internal error" not in err
    assert msg in lines[0], lines[0]
    assert out == ""
    assert files(root) == before, "something was written"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A clean working directory and HOME: no inventory is found unless a test writes one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("LUTNAS_DEVICES", raising=False)
    return tmp_path


@pytest.mark.parametrize("name", sorted(LUTS))
def test_search_refuses_a_bad_lut(name, home, capsys):
    p = write_lut(home, name)
    before = files(home)
    check(*call(search_main, ["--lut", p, "--target-ms", "5", "--steps", "5"], capsys), BAD_LUT, LUTS[name][1],
          before, home)


@pytest.mark.parametrize("name", ["median-nan", "all-negative", "cal-a-negative", "boundary-too-large", "no-space"])
def test_validate_refuses_a_bad_lut(name, home, capsys):
    p = write_lut(home, name)
    before = files(home)
    check(*call(validate_main, ["--lut", p, "--n", "4", "--out", home / "luts"], capsys), BAD_LUT, LUTS[name][1],
          before, home)


@pytest.mark.parametrize("name", ["median-nan", "median-string", "boundary-too-large"])
def test_constraint_lut_is_checked_too(name, home, capsys):
    p = write_lut(home, name)
    before = files(home)
    check(*call(search_main, ["--lut", LUT, "--target-ms", "5", "--constraint", f"{p}:latency<=5ms"], capsys),
          BAD_LUT, LUTS[name][1], before, home)


SEARCH = [
    (["--target-ms", "nan"], BAD_INPUT, "'nan' is not a positive finite number of ms"),
    (["--target-ms", "inf"], BAD_INPUT, "'inf' is not a positive finite number of ms"),
    (["--target-ms", "-3"], BAD_INPUT, "'-3' is not a positive finite number"),
    (["--target-ms", "0"], BAD_INPUT, "'0' is not a positive finite number"),
    (["--target-ms", "4,,5"], BAD_INPUT, "is not a number or comma-separated numbers"),
    (["--target-ms", "fast"], BAD_INPUT, "is not a number"),
    (["--target-ms", "5", "--constraint", "params<=1.2.3M"], BAD_INPUT, "'1.2.3M' is not a number"),
    (["--target-ms", "5", "--constraint", "params<=."], BAD_INPUT, "'.' is not a number"),
    (["--target-ms", "5", "--constraint", "params<=4ms"], BAD_INPUT, "unit 'ms' does not fit params"),
    (["--target-ms", "5", "--constraint", "local:latency<=40M"], BAD_INPUT, "unit 'M' does not fit latency"),
    (["--target-ms", "5", "--constraint", "flops<=300ms"], BAD_INPUT, "unit 'ms' does not fit flops"),
    (["--target-ms", "5", "--constraint", "params<=0"], BAD_INPUT, "must be a positive finite amount"),
    (["--target-ms", "5", "--constraint", "params<=-1M"], BAD_INPUT, "'-1M' is not a number"),
    (["--target-ms", "5", "--constraint", "flops<=nanM"], BAD_INPUT, "'nanM' is not a number"),
    (["--target-ms", "5", "--constraint", "params<4M"], BAD_INPUT, "cannot read constraint"),
    (["--target-ms", "5", "--constraint", "latency<=4ms"], BAD_INPUT, "must name a device or LUT"),
    (["--target-ms", "5", "--constraint", "pi4:params<=4M"], BAD_INPUT, "params does not depend on a device"),
    (["--target-ms", "5", "--constraint", "nosuch:latency<=4ms"], BAD_INPUT, "no LUT for device 'nosuch'"),
    (["--target-ms", "5", "--constraint", "missing.json:latency<=4ms"], BAD_LUT, "missing.json does not exist"),
    (["--target-ms", "5", "--algo", "magic"], BAD_INPUT, "unknown --algo 'magic'"),
    (["--target-ms", "5", "--steps", "0"], USAGE, "argument --steps: 0 is out of range"),
    (["--target-ms", "5", "--steps", "many"], USAGE, "argument --steps: 'many' is not an integer"),
    (["--target-ms", "5", "--algo", "hypernet", "--draws", "0"], USAGE, "argument --draws: 0 is out of range"),
    (["--target-ms", "5", "--draws", "4"], BAD_INPUT, "--draws is a hypernet setting"),
    (["--target-ms", "5", "--supernet", "/nonexistent.pt"], BAD_INPUT, "/nonexistent.pt"),
    (["--target-ms", "1.0"], INFEASIBLE, "below the minimum achievable latency"),
    (["--target-ms", "5", "--json", "{tmp}"], NOT_WRITABLE, "is a directory; give a file name"),
    (["--target-ms", "5", "--json", "{lut}/r.json"], NOT_WRITABLE, "is a file, not a directory"),
    (["--target-ms", "5", "--export", "{lut}/onnx"], NOT_WRITABLE, "is a file, not a directory"),
    (["--target-ms", "5", "--export", "{lut}"], NOT_WRITABLE, "is a file, not a directory"),
    (["--target-ms", "5", "--verify-on", "nosuch"], UNKNOWN_DEVICE, "no inventory found"),
    (["--target-ms", "5", "--lut", "{tmp}/none.json"], BAD_LUT, "does not exist"),
]


@pytest.mark.parametrize("argv, code, msg", SEARCH, ids=[" ".join(a) for a, _, _ in SEARCH])
def test_search_bad_option(argv, code, msg, home, capsys):
    mine = home / "mine.json"
    mine.write_text(LUT.read_text())
    argv = [a.format(tmp=home, lut=mine) for a in argv]
    before = files(home)
    if "--lut" not in argv:
        argv = ["--lut", mine] + argv
    if "--steps" not in argv:
        argv += ["--steps", "20"]
    check(*call(search_main, argv, capsys), code, msg, before, home)


PROFILE = [
    (["--batch", "0"], USAGE, "argument --batch: 0 is out of range"),
    (["--rounds", "0"], USAGE, "argument --rounds: 0 is out of range"),
    (["--processes", "-3"], USAGE, "argument --processes: -3 is out of range"),
    (["--threads", "-1"], USAGE, "argument --threads: -1 is out of range"),
    (["--threads", "1.5"], USAGE, "'1.5' is not an integer"),
    (["--target-ci", "0"], USAGE, "argument --target-ci: 0 is out of range"),
    (["--target-ci", "1.5"], USAGE, "argument --target-ci: 1.5 is out of range"),
    (["--budget", "-1"], USAGE, "argument --budget: -1 is out of range"),
    (["--budget", "inf"], USAGE, "'inf' is not a finite number"),
    (["--budget", "nan"], USAGE, "'nan' is not a finite number"),
    (["--device", "local", "--device", "local"], BAD_INPUT, "--device 'local' is given twice"),
    (["--device", "pi4"], UNKNOWN_DEVICE, "no inventory found (looked for $LUTNAS_DEVICES"),
    (["--device", "pi4", "--devices", "{tmp}/nope.toml"], BAD_INPUT, "nope.toml': no such file"),
    (["--runtime", "tvm"], UNKNOWN_RUNTIME, "unknown runtime 'tvm'"),
    (["--space", "nb999"], BAD_INPUT, "unknown search space 'nb999'"),
    (["--out", "{lut}/luts"], NOT_WRITABLE, "not writable"),
    (["--resume"], BAD_INPUT, "no journal for this job"),
]


@pytest.mark.parametrize("argv, code, msg", PROFILE, ids=[" ".join(a) for a, _, _ in PROFILE])
def test_profile_bad_option(argv, code, msg, home, capsys):
    f = home / "file.txt"
    f.write_text("x")
    argv = [a.format(tmp=home, lut=f) for a in argv]
    before = files(home)
    if "--out" not in argv:
        argv += ["--out", str(home / "luts")]
    check(*call(profile_main, argv + ["--quiet"], capsys), code, msg, before, home)


INVENTORIES = [
    ('port = 70000', "devices.d.port = 70000 is out of range; give a value from 1 to 65535"),
    ('port = 65558', "devices.d.port = 65558 is out of range"),
    ('port = 0', "devices.d.port = 0 is out of range"),
    ('port = "22"', "devices.d.port = '22' should be an integer"),
    ('key = "{tmp}/no_such_key"', "no such key file"),
    ('connect_timeout = nan', "connect_timeout = nan should be a finite number"),
    ('entry_timeout = 0', "entry_timeout = 0 is out of range; give a value above 0"),
    ('retries = -1', "retries = -1 is out of range"),
    ('threads = 0', "threads = 0 is out of range"),
    ('backoff_s = inf', "backoff_s = inf should be a finite number"),
    ('thread = 4', "unknown key devices.d.'thread'"),
    ('preset = "pi5"', "preset = 'pi5' is not a preset"),
]


@pytest.mark.parametrize("line, msg", INVENTORIES, ids=[x for x, _ in INVENTORIES])
def test_profile_bad_inventory(line, msg, home, capsys):
    inv = home / "devices.toml"
    inv.write_text(f'[devices.d]\nhost = "127.0.0.1"\n{line.format(tmp=home)}\n')
    before = files(home)
    # refused while reading the inventory: a missing key or a bad port never reaches a connection attempt (a
    # missing key used to be retried 5 times, 34 s)
    check(*call(profile_main, ["--device", "d", "--devices", inv, "--out", home / "luts", "--quiet"], capsys),
          BAD_INPUT, msg, before, home)


def test_inventory_errors_name_the_file(home, capsys):
    inv = home / "devices.toml"
    inv.write_text('[devices.d]\nhost = "127.0.0.1"\nport = 70000\n')
    code, _, err = call(profile_main, ["--device", "d", "--devices", inv, "--quiet"], capsys)
    assert code == BAD_INPUT and str(inv) in err
    inv.write_text('[devices.d]\nhost = "127.0.0.1"\n')
    code, _, err = call(profile_main, ["--device", "pi4", "--devices", inv, "--quiet"], capsys)
    assert code == UNKNOWN_DEVICE and f"unknown device 'pi4' in {inv}" in err and "--devices" in err


VALIDATE = [
    (["--n", "2"], USAGE, "argument --n: 2 is out of range"),
    (["--anchors", "-1"], USAGE, "argument --anchors: -1 is out of range"),
    (["--cycles", "-2"], USAGE, "argument --cycles: -2 is out of range"),
    (["--budget", "0"], USAGE, "argument --budget: 0 is out of range"),
    (["--threads", "0"], USAGE, "argument --threads: 0 is out of range"),
    (["--json", "{tmp}"], NOT_WRITABLE, "is a directory"),
    (["--plot", "{lut}/v.png"], NOT_WRITABLE, "is a file, not a directory"),
    (["--lut", "{tmp}/none.json"], BAD_LUT, "does not exist"),
    (["--device", "local", "--device", "pi4"], BAD_INPUT, "one --device at a time"),
    (["--device", "jetson"], UNKNOWN_DEVICE, "no inventory found"),
]


@pytest.mark.parametrize("argv, code, msg", VALIDATE, ids=[" ".join(a) for a, _, _ in VALIDATE])
def test_validate_bad_option(argv, code, msg, home, capsys):
    mine = home / "mine.json"
    mine.write_text(LUT.read_text())
    argv = [a.format(tmp=home, lut=mine) for a in argv]
    before = files(home)
    if "--lut" not in argv:
        argv += ["--lut", str(mine)]
    check(*call(validate_main, argv + ["--quiet", "--out", str(home / "luts")], capsys), code, msg, before, home)


def test_the_table_has_at_least_60_distinct_bad_inputs():
    n = len(LUTS) + 5 + 3 + len(SEARCH) + len(PROFILE) + len(INVENTORIES) + len(VALIDATE)
    assert n >= 60, n


# --- behaviour beyond one line ------------------------------------------------------------------------------------
def test_infeasible_target_among_feasible_ones_keeps_every_feasible_result(home, capsys):
    out = home / "r.json"
    code, stdout, err = call(search_main, ["--lut", LUT, "--target-ms", "6,8,1", "--steps", "30", "--json", out],
                             capsys)
    assert code == INFEASIBLE
    lines = [x for x in err.strip().splitlines() if "warning" not in x.split(":")[0]]  # the LUT's trust warning
    assert len(lines) == 1 and "target 1 ms" in lines[0] and "below the minimum achievable latency" in lines[0]
    table = stdout.strip().splitlines()
    assert len(table) == 3 and table[1].split()[0] == "6.000" and table[2].split()[0] == "8.000"
    rep = json.loads(out.read_text())
    assert [r["target_ms"] for r in rep["results"]] == [6.0, 8.0]
    assert [x["target_ms"] for x in rep["infeasible"]] == [1.0]


def test_two_lut_constraints_on_one_device_stay_distinct(home, capsys):
    other = home / "other.json"
    d = copy.deepcopy(DATA)
    for e in d["entries"].values():  # the same device, twice as slow: every prediction doubles
        e["median_ms"] *= 2.0
    for b in d["boundaries"].values():
        b["delta_ms"] *= 2.0
    d["calibration"]["b"] *= 2.0
    other.write_text(json.dumps(d))
    out = home / "r.json"
    code, _, err = call(search_main, ["--lut", LUT, "--target-ms", "8", "--steps", "40", "--json", out,
                                      "--constraint", f"{LUT}:latency<=7ms", "--constraint",
                                      f"{other}:latency<=12ms"], capsys)
    assert code == 0, err
    cons = json.loads(out.read_text())["results"][0]["constraints"]
    assert len(cons) == 2
    values = sorted(c["value"] for c in cons.values())
    assert values[1] == pytest.approx(2 * values[0], rel=1e-9)  # both kept, each with its own value and bound
    assert sorted(c["bound"] for c in cons.values()) == [7.0, 12.0]
    assert all(c["value"] <= c["bound"] for c in cons.values())


def test_ctrl_c_in_search_says_nothing_was_written(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.Popen([str(BIN / "search"), "--lut", str(LUT), "--target-ms", "3,4,5,6,7,8", "--algo", "bcsfw", "--steps", "100000",
                          "--json", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
                         # a user's shell hands its commands SIGINT at its default; a test suite started as a
                         # background job of a non-interactive shell (nohup ... &) would pass SIGINT ignored down to
                         # here, and Python keeps an inherited "ignore" (a fresh-clone run failed so on 2026-11-30)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(8)  # imports done, searching
    # Pressed again every 3 s (up to 20 times) only as a guard for a slow start under load. The "Ctrl-C lost inside
    # scipy's HiGHS solve" reported on 2026-11-29 did not reproduce: 12 of 12 searches (bcsfw, 6 targets, signalled
    # 6-10 s in, one core shared with a busy loop) exited 130 on the first press. The earlier repro had started the
    # process as a background job of a non-interactive shell, where SIGINT is ignored.
    try:
        for _ in range(20):
            p.send_signal(signal.SIGINT)
            try:
                p.wait(timeout=3)
                break
            except subprocess.TimeoutExpired:
                continue
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "interrupted; no results were written" in lines[0] and "Traceback" not in stderr
    assert not out.exists() and stdout == ""


def test_internal_error_is_one_line_with_traceback_advice(home, capsys, monkeypatch):
    import search.cli

    def boom(*a, **k):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(search.cli, "capacity_objective", boom)  # a bug anywhere below the CLI
    code, _, err = call(search_main, ["--lut", LUT, "--target-ms", "5"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "internal error: ZeroDivisionError" in err and "--traceback" in err
    with pytest.raises(ZeroDivisionError):
        search_main(["--lut", str(LUT), "--target-ms", "5", "--traceback"])


def test_missing_key_from_ssh_config_fails_at_once_and_is_not_retried(tmp_path):
    """A key named by IdentityFile (not the inventory) that does not exist: ConnectionFailed, which the fleet does not
    retry, before any connection is opened (the host below does not exist either)."""
    from profiler.devices import Device
    from profiler.errors import ConnectionFailed
    from profiler.ssh import ConnectionLost, SSHTransport

    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"Host box\n  HostName 192.0.2.1\n  IdentityFile {tmp_path}/gone_key\n")
    dev = Device("box", host="box", extra={"ssh_config": str(cfg), "explicit": []})
    with pytest.raises(ConnectionFailed, match="key file .*gone_key does not exist") as err:
        SSHTransport(dev).client
    assert not isinstance(err.value, ConnectionLost)
