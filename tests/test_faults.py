"""Faults in a multi-process measurement: an agent killed mid-output, an SSH connection dropped mid-run, a journal
line corrupted and the last one cut. After resuming, the LUT has the keys a fault-free run has, every entry pools
exactly one result per worker, and every worker's result was timed interleaved with the worker's whole set of
entries (never re-measured alone: a partial worker is measured again whole)."""
from pathlib import Path

import pytest

from profiler.errors import DeviceFailed
from profiler.journal import Journal
from profiler.lut import Lut
from profiler.runner import Method, profile
from profiler.space import HARDCORE, BlockSpec
from profiler.transport import AgentExit, LocalTransport

BLOCKS = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e6_se1_i192_o192_s1_hs@7", "ir_k3_e4_se0_i80_o112_s1_hs@14",
          "ir_k5_e6_se1_i40_o80_s2_hs@28", "ir_k3_e6_se0_i24_o40_s2_re@56", "ir_k5_e3_se0_i112_o112_s1_hs@14"]
ENTRIES = [(k, BlockSpec.parse(k), None) for k in BLOCKS]
ROUNDS, WORKERS = 4, 3
# max_processes = processes: no top-up workers, so every entry has exactly WORKERS results
METHOD = Method(warmup_n=2, warmup_s=0.05, target_ci=0.5, processes=WORKERS, rounds=ROUNDS, max_processes=WORKERS,
                bootstrap=200)


class Recorder:
    """Every entry line the agent produced, with its worker and how many entries that agent run timed together."""

    def __init__(self):
        self.lines = []  # (key, worker, samples, entries in the run)

    def note(self, manifest, msg):
        if msg.get("type") == "entry":
            self.lines.append((msg["key"], msg.get("worker", 0), msg["samples_ms"], len(manifest["entries"])))


def local_factory(rec: Recorder, kill_after=None):
    """Local agents, recorded; with ``kill_after=(worker, n)`` the agent of that worker is SIGKILLed once it has
    printed n entry lines (it prints a worker's lines in one burst, so the test stops reading there: the lines a
    real kill would have cut off never reach the host)."""

    class Recording(LocalTransport):
        def run(self, manifest, *args, **kw):
            worker, n = manifest["method"].get("worker", 0), 0
            for msg in super().run(manifest, *args, **kw):
                rec.note(manifest, msg)
                yield msg
                if msg.get("type") == "entry":
                    n += 1
                    if kill_after == (worker, n):
                        self.proc.kill()
                        self.proc.wait()
                        raise AgentExit(-9, "killed by the test mid-output")

    return Recording


def corrupt_and_cut(journal: Path) -> int:
    """Overwrite an entry line of worker 0 in the middle with garbage and cut the last line in half; returns how many
    complete, intact lines are left."""
    lines = journal.read_bytes().split(b"\n")[:-1]
    entry_nos = [i for i, ln in enumerate(lines) if b'"type": "entry"' in ln and b'"worker": 0' in ln]
    mid = entry_nos[len(entry_nos) // 2]
    lines[mid] = b"{\"type\": \"entry\", \"key\": \x00\x00 garbage"
    last = lines[-1]
    journal.write_bytes(b"\n".join(lines[:-1]) + b"\n" + last[:len(last) // 2])
    return len(lines) - 2


def check_resumed(lut: Lut, reference: Lut, rec: Recorder):
    assert sorted(lut.entries) == sorted(reference.entries) == sorted(BLOCKS)
    by = {}
    for key, w, samples, size in rec.lines:
        by.setdefault((key, w), []).append((samples, size))
    for key, e in lut.entries.items():
        assert e["workers"] == WORKERS and e["n"] == WORKERS * ROUNDS  # one result per worker: none lost or doubled
        for w in range(WORKERS):
            part = e["samples_ms"][w * ROUNDS:(w + 1) * ROUNDS]
            sizes = [size for samples, size in by[(key, w)] if samples == part]
            assert sizes, f"{key} worker {w}: pooled samples not from any agent line"
            assert sizes[0] == len(BLOCKS), f"{key} worker {w} was timed with {sizes[0]} entries, not interleaved"


def test_killed_agent_corrupt_line_and_cut_tail_resume_to_a_whole_interleaved_lut(tmp_path, capsys):
    reference, _ = profile(_local(), HARDCORE, _runtime(), 1, METHOD, tmp_path / "ref", progress=False,
                           entries=ENTRIES)
    reference = Lut.load(reference)
    rec = Recorder()
    out = tmp_path / "luts"
    with pytest.raises(DeviceFailed, match="killed by the test"):
        profile(_local(), HARDCORE, _runtime(), 1, METHOD, out, transport_factory=local_factory(rec, (1, 2)),
                progress=False, entries=ENTRIES)
    journal = next(out.rglob(".journal-*.jsonl"))
    intact = corrupt_and_cut(journal)
    capsys.readouterr()  # (busy-device warnings of the runs so far)
    j = Journal(journal)
    assert len(j.lines) == intact  # every good line kept, before and after the corrupt one
    err = capsys.readouterr().err
    assert "corrupt" in err and "skipped" in err and len(err.strip().splitlines()) == 1
    path, _ = profile(_local(), HARDCORE, _runtime(), 1, METHOD, out, transport_factory=local_factory(rec),
                      progress=False, entries=ENTRIES)
    check_resumed(Lut.load(path), reference, rec)
    # the worker left partial by the corrupt line and the one left partial by the kill were measured again whole
    resumed = [size for *_, size in rec.lines[len(BLOCKS) + 2:]]
    assert resumed and set(resumed) == {len(BLOCKS)}


@pytest.mark.ssh
def test_dropped_ssh_connection_and_corrupt_journal_resume_to_a_whole_interleaved_lut(tmp_path):
    from profiler.ssh import ConnectionLost, SSHTransport
    from profiler.inventory import load_inventory
    from tests.sshd import Sshd

    sshd = Sshd(tmp_path / "sshd").start()
    try:
        inv = tmp_path / "devices.toml"
        inv.write_text(sshd.device_toml("xeon", "xeon", tmp_path / "w"))
        dev = load_inventory(str(inv))["xeon"]
        rec = Recorder()

        def factory(drop_at_worker=None):
            class Recording(SSHTransport):
                def run(self, manifest, *args, **kw):
                    worker = manifest["method"].get("worker", 0)
                    for msg in super().run(manifest, *args, **kw):
                        rec.note(manifest, msg)
                        if msg.get("type") == "fingerprint" and worker == drop_at_worker:
                            assert sshd.kill_session()  # the agent is measuring: the connection drops under it
                        yield msg

            return lambda: Recording(dev)

        rt = dev.runtime_settings()
        ref, _ = profile(dev, HARDCORE, rt, 1, METHOD, tmp_path / "ref", transport_factory=factory(),
                         progress=False, entries=ENTRIES)
        rec.lines.clear()
        out = tmp_path / "luts"
        with pytest.raises(ConnectionLost):
            profile(dev, HARDCORE, rt, 1, METHOD, out, transport_factory=factory(drop_at_worker=1), progress=False,
                    entries=ENTRIES)
        journal = next(out.rglob(".journal-*.jsonl"))
        corrupt_and_cut(journal)
        path, _ = profile(dev, HARDCORE, rt, 1, METHOD, out, transport_factory=factory(), progress=False,
                          entries=ENTRIES)
        check_resumed(Lut.load(path), Lut.load(ref), rec)
    finally:
        sshd.stop()


def test_partial_worker_is_set_aside_and_progress_counts_only_this_runs_work(monkeypatch):
    from profiler.progress import Progress
    from profiler.resume import run_record, usable_by_worker

    keys = ["a", "b", "c"]
    e = lambda k, w: {"type": "entry", "key": k, "worker": w, "samples_ms": [1.0]}  # noqa: E731
    lines = [run_record(0, keys), e("a", 0), e("b", 0), e("c", 0), run_record(1, keys), e("a", 1)]
    have = usable_by_worker(lines, keys, need=3)
    assert {k: sorted(v) for k, v in have.items()} == {"a": [0], "b": [0], "c": [0]}
    lines += [run_record(1, keys), e("a", 1), e("b", 1), e("c", 1)]  # worker 1 again, whole
    have = usable_by_worker(lines, keys, need=3)
    assert all(sorted(v) == [0, 1] for v in have.values()) and have["a"][1] is lines[-3]
    # a journal of before run records: worker 0 lacking an entry is partial, by the plan
    assert usable_by_worker([e("a", 0), e("b", 0)], keys, need=3) == {}
    assert sorted(usable_by_worker([e("a", 0), e("b", 0)], keys, need=1)) == ["a", "b"]  # one adaptive process

    import io

    import profiler.progress as prog

    clock = [0.0]
    monkeypatch.setattr(prog.time, "monotonic", lambda: clock[0])
    s = io.StringIO()
    p = Progress(100, "x", stream=s)
    p.update(90)  # resumed from a journal
    clock[0] = 10.0
    p.update(95)  # 5 units in 10 s: the 5 left take 10 s more (it said 10/95 * 5 = 1 s)
    assert "95/100 (90 resumed)" in s.getvalue().splitlines()[-1]
    assert "ETA 10s" in s.getvalue().splitlines()[-1]


def _local():
    from profiler.devices import LOCAL

    return LOCAL


def _runtime():
    return _local().runtime_settings()
