"""The agent and the host runner, for real: subprocesses, ONNX Runtime sessions, files."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from profiler.lut import Lut
from profiler.runner import Method
from profiler.space import HARDCORE
from profiler.transport import AGENT

BIN = Path(sys.executable).parent
# the profiling path's mechanics (workers, journal, resume); one call per sample keeps them quick on a busy host
FAST = ["--target-ci", "0.05", "--processes", "3", "--rounds", "4", "--mode", "interleaved", "--quiet"]


def run_agent(tmp_path, blocks, **method):
    from profiler.export import export_block

    entries = [{"key": str(b), "model": str(export_block(b)[0]), "shape": list(b.input_shape(1))} for b in blocks]
    m = {"warmup_n": 3, "warmup_s": 0.2, "min_n": 20, "target_ci": 0.02, "budget_s": 1.0}
    m.update(method)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"runtime": {"name": "onnxruntime", "threads": 1}, "method": m,
                                    "entries": entries}))
    out = subprocess.run([sys.executable, str(AGENT), str(manifest)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_agent_protocol_fingerprint_first_entries_then_done(tmp_path):
    blocks = HARDCORE.unique_blocks()[:4]
    lines = run_agent(tmp_path, blocks)
    assert lines[0]["type"] == "fingerprint" and lines[0]["cpu_count"] >= 1 and "onnxruntime" in lines[0]["runtime"]
    assert lines[-1]["type"] == "done" and lines[-1]["entries"] == 4
    assert len(lines[0]["loadavg"]) == 3 and all(v >= 0 for v in lines[0]["loadavg"])
    entries = [x for x in lines if x["type"] == "entry"]
    assert sorted(e["key"] for e in entries) == sorted(map(str, blocks))
    for e in entries:
        assert e["n"] == len(e["samples_ms"]) >= 20
        assert e["p10_ms"] <= e["median_ms"] <= e["p90_ms"]
        assert e["median_ms"] == pytest.approx(float(np.median(e["samples_ms"])), rel=1e-3)
        assert e["ci95_ms"] > 0
        assert set(e["flags"]) <= {"ci_not_reached", "unstable_std", "outliers"}


def test_ci_shrinks_with_more_samples(tmp_path):
    """More repeats of the same block give a narrower CI of its median.

    Two separate runs cannot show it reliably here: a run of 15 calls can fall inside one quiet stretch while 400
    calls span this host's speed swings (CI found: 4.2 % at n=15 vs 4.7 % at n=400). So the relation is taken on one
    real run's samples: the agent's CI over all of them against its CI over random 15-call subsets of them."""
    from agents.lutnas_agent import bootstrap_ci

    b = [HARDCORE.searchable_blocks()[30]]
    loose = [x for x in run_agent(tmp_path, b, target_ci=0.5, min_n=15) if x["type"] == "entry"][0]
    tight = [x for x in run_agent(tmp_path, b, target_ci=0.0, min_n=15, budget_s=0.6, max_n=400)
             if x["type"] == "entry"][0]
    assert tight["n"] > 4 * loose["n"]
    assert "ci_not_reached" in tight["flags"] and "ci_not_reached" not in loose["flags"]
    x = np.asarray(tight["samples_ms"])
    # the agent reports samples rounded to 10 ns (5 decimals of a ms); its CI is of the unrounded ones
    assert tight["ci95_ms"] == pytest.approx(bootstrap_ci(x), abs=1e-5)
    rng = np.random.default_rng(0)
    small = [bootstrap_ci(rng.choice(x, 15, replace=False)) for _ in range(20)]
    assert bootstrap_ci(x) < np.median(small)


def test_pooled_ci_from_order_statistics_matches_the_bootstrap_on_many_samples():
    """The host pools thousands of samples an entry and takes their CI from order statistics (a sort) instead of a
    1000-resample bootstrap (which was most of a profile's host time): on a skewed, noisy sample like a block's, the
    two agree within 15 % (on a real 159-entry LUT: 0.95-1.16x, median 1.02x), and the CI shrinks with more samples."""
    from agents.lutnas_agent import bootstrap_ci, order_ci

    rng = np.random.default_rng(3)
    x = 1.0 + rng.lognormal(-2.5, 0.8, 1600) + (rng.random(1600) < 0.05) * rng.exponential(2.0, 1600)
    assert order_ci(x) == pytest.approx(bootstrap_ci(x), rel=0.15)
    assert order_ci(x) < order_ci(x[:100]) < order_ci(x[:20])


def test_top_up_workers_only_for_entries_that_can_reach_the_ci_target():
    """After the planned workers, an entry above its CI target gets another worker only if, at 1/sqrt(n), the
    workers it needs fit under max_processes; one far above it stays flagged instead of running to the cap."""
    from profiler.runner import worth_a_worker

    m = Method(target_ci=0.01, processes=20, max_processes=40)

    def entry(ci_pct, reached=False):
        return {"median_ms": 1.0, "ci95_ms": ci_pct / 100, "flags": [] if reached else ["ci_not_reached"]}

    assert worth_a_worker(entry(1.2), 20, m)  # 20 x 1.44 = 29 workers: within reach
    assert not worth_a_worker(entry(1.5), 20, m)  # 45 workers needed
    assert worth_a_worker(entry(1.05), 36, m) and not worth_a_worker(entry(1.05), 38, m)  # 39.7 vs 41.9
    assert not worth_a_worker(entry(0.8, reached=True), 20, m)


def test_measured_relations_hold_despite_noise(tmp_path):
    """Over the first stage's first-block shape (16 -> 24 channels at 112x112, stride 2): e=6 costs more than e=3,
    and k=5 more than k=3.

    The shape is the one where k=5 costs most over k=3 in both committed LUTs (+10.5 % and +12.7 %); at stage 3's
    first block it is +3.7 to +6.2 %, within this VM's per-process noise, and that version of this test failed once
    in CI (2.518 vs 2.523 ms). SE is not asserted: on ONNX Runtime's CPU provider SE blocks measured *faster* than
    plain ones here."""
    blocks = [HARDCORE.block(0, 0, c) for c in HARDCORE.configs]
    med = {x["key"]: x["median_ms"] for x in run_agent(tmp_path, blocks) if x["type"] == "entry"}
    t = {(b.e, b.k, b.se): med[str(b)] for b in blocks}
    total = lambda pred: sum(v for k, v in t.items() if pred(*k))  # noqa: E731
    assert total(lambda e, k, se: e == 6) > total(lambda e, k, se: e == 3)
    assert total(lambda e, k, se: k == 5) > total(lambda e, k, se: k == 3)


def journal_path(out):
    found = list((out / "local" / HARDCORE.name).glob(".journal-*.jsonl"))
    return found[0] if found else None


def test_profile_cli_writes_a_complete_lut_and_prints_its_path(tmp_path):
    out = tmp_path / "luts"
    r = subprocess.run([str(BIN / "profile"), "--device", "local", "--out", str(out), *FAST],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.parent == out / "local" / HARDCORE.name and path.exists()
    lut = Lut.load(path, space=HARDCORE, device="local")
    assert set(map(str, HARDCORE.unique_blocks())) <= set(lut.entries)
    assert len(lut.data["boundaries"]) == 7  # stem, ds and the five stage outputs
    assert lut.data["device"]["fingerprint"]["pinned_cores"]
    assert lut.data["runtime"]["version"].startswith("onnxruntime")
    assert journal_path(out) is None  # the journal's content is now in the LUT
    table = lut.block_table()
    assert all(v > 0 for v in table.values())


def test_killed_run_resumes_without_losing_or_repeating_entries(tmp_path):
    out = tmp_path / "luts"
    cmd = [str(BIN / "profile"), "--device", "local", "--out", str(out), *FAST]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once the first worker's results are journaled, the second's not all
        j = journal_path(out)
        if j is not None and j.read_text().count('"worker": 1') >= 1:
            break
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the host and its agent, mid-run
    proc.wait()
    lines = journal_path(out).read_text().splitlines()
    before = {(x["key"], x["worker"]): x for x in map(json.loads, [ln for ln in lines if ln.endswith("}")])
              if x["type"] == "entry"}
    assert 159 <= len(before) < 3 * 159, "the run must be killed mid-way"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    lut = Lut.load(Path(r.stdout.strip().splitlines()[-1]))
    assert len(lut.entries) == 159
    for key, e in lut.entries.items():
        # every worker once (more than 3 only where the pooled CI missed its target): nothing repeated or missing
        assert 3 <= e["workers"] <= 6 and e["n"] == e["workers"] * 4
        assert e["workers"] == 3 or "ci_not_reached" in e["flags"] or e["ci95_ms"] <= 0.05 * e["median_ms"]
        for w in range(3):
            if (key, w) in before:  # nothing lost: the journaled samples are the LUT's
                assert e["samples_ms"][w * 4:(w + 1) * 4] == before[(key, w)]["samples_ms"]
                assert e["worker_medians_ms"][w] == before[(key, w)]["median_ms"]


@pytest.mark.parametrize("args, code, msg", [
    (["--device", "nosuch"], 3, "unknown device 'nosuch'"),
    (["--runtime", "tvm"], 4, "unknown runtime 'tvm'"),
    (["--out", "/dev/null/luts"], 6, "/dev/null/luts.* not writable"),
    (["--resume"], 14, "no journal for this job"),
])
def test_bad_input_gives_one_line_and_its_exit_code(tmp_path, args, code, msg):
    argv = ["--out", str(tmp_path / "luts")] + args if "--out" not in args else args
    r = subprocess.run([str(BIN / "profile"), *argv, "--quiet"], capture_output=True, text=True, timeout=120)
    assert r.returncode == code
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("profile: error: ")
    import re

    assert re.search(msg, lines[0]), lines[0]
    assert r.stdout == ""
    assert not list(tmp_path.rglob("*.json"))


def test_journal_without_a_readable_line_is_refused(tmp_path):
    out = tmp_path / "luts"
    from profiler.devices import LOCAL
    from profiler.runner import job_entries, job_id

    m = Method.preset("interleaved", target_ci=0.05, processes=3, rounds=4, max_processes=6)  # as FAST asks
    jid = job_id(LOCAL, HARDCORE, LOCAL.runtime_settings(), 1, m, [k for k, _, _ in job_entries(HARDCORE, m)])
    d = out / "local" / HARDCORE.name
    d.mkdir(parents=True)
    # a corrupt line among good ones is skipped (tests/test_faults.py); a file with no readable line is no journal
    (d / f".journal-{jid}.jsonl").write_text('<<garbage>>\n\x00\x00\n')
    r = subprocess.run([str(BIN / "profile"), "--out", str(out), *FAST], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 7, r.stderr
    assert "has no readable line (line 1" in r.stderr and str(d) in r.stderr


def test_missing_runtime_package_names_it(tmp_path):
    """A Python without numpy/onnxruntime (a bare venv) as the agent's interpreter."""
    import venv

    from profiler.devices import LOCAL
    from profiler.errors import RuntimeMissing
    from profiler.runner import profile
    from profiler.transport import LocalTransport

    venv.create(tmp_path / "bare", with_pip=False)
    bare = str(tmp_path / "bare" / "bin" / "python")
    blocks = HARDCORE.unique_blocks()[:2]
    entries = [(str(b), b, None) for b in blocks]
    with pytest.raises(RuntimeMissing, match="runtime package 'numpy' is not installed.*pip install"):
        profile(LOCAL, HARDCORE, LOCAL.runtime_settings(), out=tmp_path / "luts", progress=False, entries=entries,
                transport_factory=lambda: LocalTransport(python=bare))
    assert not list((tmp_path / "luts").rglob("*.json"))


def test_busy_device_warns_once_with_its_load(capsys):
    from profiler.runner import busy_warning

    assert not busy_warning("pi4", {"loadavg": [1.2, 1.0, 0.9], "cpu_count": 4})
    assert not busy_warning("old", {"cpu_count": 4})  # an agent without the field: no claim either way
    assert busy_warning("local", {"loadavg": [3.9, 3.5, 2.5], "cpu_count": 2})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'local' is busy (load average 3.90 on 2 cores)" in err[0]


def test_progress_never_shows_more_done_than_planned():
    """Entries that miss the CI target get extra workers after the planned work: the bar stays at total and says
    why, instead of counting 166/159."""
    import io

    from profiler.progress import Progress

    out = io.StringIO()
    bar = Progress(159, "profile local", stream=out)
    bar.update(159)
    bar.update(166, "7 entries above the CI target: one more worker each")
    last = out.getvalue().strip().splitlines()[-1]
    assert bar.done == 159 and " 159/159 " in last and "166" not in last and "one more worker" in last


def test_steady_bursts_read_warm_calls_and_interleaved_cold_ones(tmp_path):
    """Issue 18: the same small blocks timed in steady bursts (first calls of a burst dropped) and interleaved (one
    call per block per round, caches holding another model at every call). Warm calls are the faster: 1.1-6x per
    block on the AMD VM; on the Intel one 2-4 % over 4 blocks, less than the host moved between two runs (a CI run
    read 0.91x), and 1.07-1.26x per block over 12 blocks. So 12 blocks, in the order interleaved, steady, steady,
    interleaved: a drift of the host's speed that is linear over the four runs cancels. One sample per burst; the done
    line splits the time (timed calls include the dropped ones)."""
    blocks = HARDCORE.unique_blocks()[:12]
    runs = [(mode, run_agent(tmp_path, blocks, rounds=12, mode=mode, burst=8, burst_warmup=3))
            for mode in ("interleaved", "steady", "steady", "interleaved")]
    med = {mode: sum(x["median_ms"] for m, ls in runs if m == mode for x in ls if x["type"] == "entry")
           for mode in ("interleaved", "steady")}
    assert med["interleaved"] > med["steady"], med
    lines = dict(runs)  # the last run of each mode
    for mode, ls in lines.items():
        assert all(x["n"] == 12 for x in ls if x["type"] == "entry")
        split = ls[-1]["split"]
        assert split["timed_s"] >= split["kept_s"] > 0 and split["setup_s"] > 0 and split["imports_s"] > 0
    steady = lines["steady"][-1]["split"]  # 5 of 8 calls kept: about 5/8 of the timed seconds
    assert 0.4 < steady["kept_s"] / steady["timed_s"] < 0.8
    assert lines["interleaved"][-1]["split"]["kept_s"] == pytest.approx(lines["interleaved"][-1]["split"]["timed_s"])


def test_phased_rounds_time_each_kind_of_entry_after_the_other_in_a_fresh_order():
    """validate's same-run table (Method.phases): blocks then networks, each kind shuffled, blocks every k-th round."""
    from agents.lutnas_agent import round_order

    keys = ["lut:a", "net:x", "lut:b", "lut:c", "net:y", "lut:d"]
    rng = np.random.RandomState(0)
    order = round_order(keys, {"phases": 3})
    phased = [order(rng, r) for r in range(30)]
    for r, o in enumerate(phased):
        if r % 3 == 0:  # the first kind (the blocks) every 3rd round, always before the second
            assert sorted(o) == list(range(len(keys)))
            assert [keys[i].split(":")[0] for i in o] == ["lut"] * 4 + ["net"] * 2
        else:
            assert sorted(o) == [1, 4]
    assert len({tuple(o) for o in phased[::3]}) > 5  # a fresh order within each kind, round after round
    plain = [round_order(keys, {})(rng, r) for r in range(30)]
    assert all(sorted(o) == list(range(len(keys))) for o in plain)
    assert any(keys[o[0]].startswith("net:") for o in plain)  # without phases the kinds mix
