"""Property tests (hypothesis): a LUT or an inventory mutated at random is either a valid input or refused with one
line and a documented exit code — never a traceback, never a wrong (non-finite, non-positive) latency.

Each target runs ``EXAMPLES`` examples (500 in CI; ``LUTNAS_HYPOTHESIS_EXAMPLES`` lowers it for a quick local run),
calling the loaders and the CLIs' ``main(argv)`` in-process.
"""
import copy
import io
import json
import math
import os
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from profiler.errors import BadInput, BadLut, CorruptJournal, DeviceFailed, UnknownDevice
from profiler.journal import Journal
from profiler.lut import Lut
from profiler.space import HARDCORE, BlockSpec

EXAMPLES = int(os.environ.get("LUTNAS_HYPOTHESIS_EXAMPLES", "500"))
# random examples by default (they found two bugs on 11-30); .ci/run fixes them (LUTNAS_DERANDOMIZE=1), so that the
# run that decides whether a change lands tests what was tested before it
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("LUTNAS_DERANDOMIZE") == "1",
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LUT = (Path(__file__).resolve().parent.parent / "luts" / "local" / "hardcore-mbv3" /
       "20261122T232635Z-onnxruntime-t1-b1-cal-20261122T233124Z.json")


def _small(data: dict) -> dict:
    """The committed LUT without most raw samples (so an example is quick); three entries keep 20 of theirs."""
    d = copy.deepcopy(data)
    for i, e in enumerate(d["entries"].values()):
        e.pop("worker_medians_ms", None)
        if i >= 3:
            e.pop("samples_ms", None)
        else:
            e["samples_ms"] = e["samples_ms"][:20]
    return d


BASE = _small(json.loads(LUT.read_text()))


def _paths(obj, prefix=()):
    if prefix:
        yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:2]):
            yield from _paths(v, prefix + (i,))


LUT_PATHS = list(_paths(BASE))
META_PATHS = [p for p in LUT_PATHS if p[0] != "entries" or len(p) <= 3]  # the root's tables, and entries' fields
VALUES = st.sampled_from([None, "x", "1.0", [], {}, True, False, 0, -1, float("nan"), float("inf"), float("-inf"),
                          1e308, -1e-9, 1e-300])
OPS = st.sampled_from(["drop", "set", "negate", "scale", "rename"])


def _apply(doc, path, op, value, scale):
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    last = path[-1]
    if op == "drop":
        if isinstance(parent, dict):
            parent.pop(last)
        else:
            parent.pop(last)
    elif op == "rename" and isinstance(parent, dict):
        parent[str(last) + "_x"] = parent.pop(last)
    elif op in ("negate", "scale") and isinstance(parent[last], (int, float)) and not isinstance(parent[last], bool):
        parent[last] = -parent[last] if op == "negate" else parent[last] * scale
    else:
        parent[last] = value


@st.composite
def mutated_lut(draw):
    """A JSON text: the small LUT with 1-3 random mutations, sometimes truncated."""
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(META_PATHS if draw(st.booleans()) else LUT_PATHS))
        try:
            _apply(doc, path, draw(OPS), draw(VALUES), draw(st.sampled_from([0.0, 1e-6, 1e3, 1e12])))
        except (KeyError, IndexError, TypeError, AttributeError):
            pass  # an earlier mutation removed or replaced the path's parent (None has no .pop)
    text = json.dumps(doc)
    if draw(st.integers(0, 9)) == 0:
        text = text[:draw(st.integers(0, len(text) - 1))]
    return text


_TMP = tempfile.TemporaryDirectory(prefix="lutnas-prop-")


def _write(text: str, name: str = "lut.json") -> Path:
    p = Path(_TMP.name) / name
    p.write_text(text)
    return p


@SETTINGS
@given(mutated_lut())
def test_mutated_lut_loads_to_positive_latencies_or_is_refused_in_one_line(text):
    p = _write(text)
    try:
        lut = Lut.load(p, space=HARDCORE)
        table = lut.block_table()
        model = lut.latency_model()
    except BadLut as exc:
        msg = str(exc)
        assert str(p) in msg and "\n" not in msg
        event("refused")
        return
    event("valid")
    assert all(math.isfinite(v) and v > 0 for v in table.values())
    assert 0 < model.min_value() <= model.max_value() < math.inf


def _run(main, argv):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


@SETTINGS
@given(mutated_lut())
def test_search_on_a_mutated_lut_runs_or_exits_with_a_documented_code(text):
    from search.cli import main

    p = _write(text)
    code, out, err = _run(main, ["--lut", p, "--target-ms", "5", "--steps", "3", "--quiet"])
    assert code in (0, 9, 13), err
    event(f"exit {code}")
    if code:
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""
    else:
        predicted = float(out.strip().splitlines()[1].split()[1])
        assert 0 < predicted <= 5.0


INVENTORY_KEYS = {
    "host": st.sampled_from(["127.0.0.1", "", "pi4.local"]),
    "port": st.one_of(st.integers(-70000, 140000), st.sampled_from([22, 0, 65535, 65536])),
    "user": st.sampled_from(["pi", ""]),
    "key": st.sampled_from(["{tmp}/id_key", "{tmp}/missing_key", "~/nope"]),
    "python": st.sampled_from(["python3", "/usr/bin/python3"]),
    "preset": st.sampled_from(["xeon", "pi4", "phone", "jetson", "local", "pi5"]),
    "threads": st.integers(-2, 8),
    "batch": st.integers(-1, 4),
    "runtime": st.sampled_from(["onnxruntime", "tflite", "tvm"]),
    "connect_timeout": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 60)),
    "entry_timeout": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 600)),
    "retries": st.integers(-3, 10),
    "backoff_s": st.floats(allow_nan=True, allow_infinity=True),
    "providers": st.sampled_from([["CPUExecutionProvider"], [], [1]]),
    "thread": st.integers(1, 4),  # a typo: unknown key
}


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v == math.inf else "-inf" if v == -math.inf else repr(v))
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(v)


@st.composite
def inventory(draw):
    keys = draw(st.lists(st.sampled_from(sorted(INVENTORY_KEYS)), max_size=6, unique=True))
    body = {"host": "127.0.0.1", **{k: draw(INVENTORY_KEYS[k]) for k in keys}}
    if draw(st.integers(0, 9)) == 0:
        body.pop("host")
    lines = ["[devices.d]"] + [f"{k} = {_toml(v).replace('{tmp}', _TMP.name)}" for k, v in body.items()]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 9)) == 0:
        text = text[:draw(st.integers(0, len(text)))]
    return text


(Path(_TMP.name) / "id_key").write_text("not a real key, only has to exist\n")


@SETTINGS
@given(inventory())
def test_mutated_inventory_gives_a_sane_device_or_one_line(text):
    from profiler.inventory import resolve_device
    from profiler.ssh import ssh_settings

    f = _write(text, "devices.toml")
    try:
        dev = resolve_device("d", str(f))
    except (BadInput, UnknownDevice) as exc:
        assert "\n" not in str(exc)
        event("refused")
        return
    event("valid")
    s = ssh_settings(dev)
    assert 1 <= s["port"] <= 65535 and dev.preset.threads >= 1 and dev.preset.batch >= 1
    assert s["connect_timeout"] > 0 and s["entry_timeout"] > 0 and math.isfinite(s["connect_timeout"])
    assert all(Path(k).is_file() for k in s["key_filenames"])


@SETTINGS
@given(inventory())
def test_validate_with_a_mutated_inventory_exits_with_a_documented_code(text):
    """The inventory is read before the LUT: a valid one gets as far as the (missing) LUT, exit 9; never a traceback."""
    from profiler.cli import validate_main

    f = _write(text, "devices.toml")
    code, out, err = _run(validate_main, ["--device", "d", "--devices", f, "--lut", Path(_TMP.name) / "none.json",
                                          "--quiet"])
    assert code in (3, 9, 14), err
    event(f"exit {code}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and out == ""


# --- journals: damage, then resume ---------------------------------------------------------------------------------
JOURNAL_BLOCKS = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e6_se1_i192_o192_s1_hs@7", "ir_k3_e4_se0_i80_o112_s1_hs@14",
                  "ir_k5_e6_se1_i40_o80_s2_hs@28"]


class FakeAgent:
    """Stands in for the agent process (a real one costs seconds a run, 500 examples need thousands of runs): the
    same line protocol, each entry tagged with the run that produced it and how many entries that run timed
    together. ``kill_after`` lines into its life it stops as a killed agent does (AgentExit)."""

    runs = 0

    def __init__(self, kill_after=None):
        self.kill_after, self.sent = kill_after, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def run(self, manifest, args=()):
        from profiler.transport import AgentExit

        FakeAgent.runs += 1
        keys = [e["key"] for e in manifest["entries"]]
        w = manifest["method"].get("worker", 0)
        msgs = [{"type": "fingerprint", "schema": 1}]
        msgs += [{"type": "entry", "key": k, "worker": w, "median_ms": 1.0, "samples_ms": [1.0, 1.0],
                  "run": FakeAgent.runs, "run_size": len(keys)} for k in keys]
        msgs.append({"type": "done", "wall_s": 0.0})
        for m in msgs:
            if self.kill_after is not None and self.sent >= self.kill_after:
                raise AgentExit(-9, "killed")
            self.sent += 1
            yield m


@SETTINGS
@given(kill_after=st.integers(1, 20), corrupt=st.lists(st.integers(0, 40), max_size=3),
       cut=st.one_of(st.none(), st.integers(1, 200)))
def test_journal_damage_then_resume_keeps_every_written_result_once_with_a_fake_agent(kill_after, corrupt, cut):
    from profiler.devices import LOCAL
    from profiler.progress import Progress
    from profiler.resume import usable_by_worker
    from profiler.runner import Method, run_job
    method = Method(processes=3, rounds=2, max_processes=3)
    entries = [(k, BlockSpec.parse(k), None) for k in JOURNAL_BLOCKS]
    path = Path(_TMP.name) / "journal.jsonl"
    path.unlink(missing_ok=True)
    quiet = Progress(1, enabled=False)
    rt = LOCAL.runtime_settings()
    j = Journal(path)
    try:
        run_job(LOCAL, lambda: FakeAgent(kill_after), rt, 1, method, entries, j, quiet)
    except DeviceFailed:
        pass  # the agent was killed mid-run
    j.close()
    # damage: overwrite some complete lines with garbage, cut the tail mid-line
    lines = path.read_bytes().split(b"\n")[:-1]
    for i in corrupt:
        if i < len(lines):
            lines[i] = b"\x00garbage{"
    data = b"".join(ln + b"\n" for ln in lines)
    if cut is not None:
        data = data[:max(len(data) - cut, 0)]
    path.write_bytes(data)
    intact = [json.loads(ln) for ln in data.split(b"\n")[:-1] if ln.strip() and not ln.startswith(b"\x00")]
    keys = list(JOURNAL_BLOCKS)
    kept = usable_by_worker(intact, keys, 3)  # what the damaged journal still holds whole
    with redirect_stderr(io.StringIO()):
        try:
            j = Journal(path)
        except CorruptJournal:  # nothing readable left: the only refusal
            assert not intact
            return
    assert j.lines == intact  # every complete, undamaged line is kept, in order, once
    run_job(LOCAL, lambda: FakeAgent(), rt, 1, method, entries, j, quiet)
    j.close()
    final = usable_by_worker(Journal(path).lines, keys, 3)
    assert sorted(final) == sorted(keys)
    for k in keys:
        assert sorted(final[k]) == [0, 1, 2]  # one result per worker: none lost, none twice
        for w, line in final[k].items():
            assert line["run_size"] == len(keys)  # timed interleaved with the whole set, never alone
            if w in kept.get(k, {}):
                assert line["run"] == kept[k][w]["run"]  # a whole worker is never re-measured
