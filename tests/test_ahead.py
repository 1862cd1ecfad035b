"""Workers prepared ahead (issue 18): the next agent starts, imports and loads its sessions on the cores the
measuring one leaves free, then waits; told ``go`` with a subset of its entries it times exactly those, on the
measuring core. A profile made this way pools the same workers and samples as one worker after another."""
import json
import os
from pathlib import Path

import pytest

from profiler.devices import LOCAL
from profiler.export import export_block
from profiler.lut import Lut
from profiler.runner import Method, profile
from profiler.space import HARDCORE, BlockSpec
from profiler.transport import LocalTransport

BLOCKS = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e6_se1_i192_o192_s1_hs@7", "ir_k3_e4_se0_i80_o112_s1_hs@14"]
RT = {"name": "onnxruntime", "threads": 1}
TWO_CORES = hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2
needs_two = pytest.mark.skipif(not TWO_CORES, reason="a worker is prepared ahead only on a spare core")


def manifest(keys, **method):
    entries = []
    for k in keys:
        b = BlockSpec.parse(k)
        entries.append({"key": k, "model": str(export_block(b, 1, "onnx")[0]), "shape": list(b.input_shape(1))})
    m = dict(dict(warmup_n=2, warmup_s=0.0, rounds=3, worker=0, seed=0, pin="auto"), **method)
    return {"job": "t", "runtime": RT, "method": m, "entries": entries}


@needs_two
def test_held_worker_times_only_the_keys_it_is_told_on_the_measuring_core():
    with LocalTransport() as t:
        held = t.prepare(manifest(BLOCKS))
        assert held is not None
        lines = list(held.go(BLOCKS[:2]))
    kinds = [m["type"] for m in lines]
    assert kinds[0] == "ready" and kinds[1] == "fingerprint" and kinds[-1] == "done"
    ready, fp = lines[0], lines[1]
    last = sorted(os.sched_getaffinity(0))[-1]
    assert fp["pinned_cores"] == [last] and last not in ready["prep_cores"]  # prepared elsewhere, timed there
    assert ready["entries"] == 3
    timed = [m["key"] for m in lines if m["type"] == "entry"]
    assert sorted(timed) == sorted(BLOCKS[:2])  # the third was loaded but never timed
    done = lines[-1]
    assert done["split"]["prep_s"] > 0 and done["split"]["setup_s"] < done["split"]["prep_s"]


@needs_two
def test_held_worker_told_anything_but_go_ends_without_timing(tmp_path):
    with LocalTransport() as t:
        held = t.prepare(manifest(BLOCKS[:1]))
        held.proc.stdin.write("{}\n")
        held.proc.stdin.close()
        out = held.proc.stdout.read()
        assert held.proc.wait(timeout=60) == 0
    kinds = [json.loads(x)["type"] for x in out.splitlines() if x.startswith("{")]
    assert kinds == ["ready"]


def test_no_spare_core_means_no_held_worker():
    cores = ",".join(map(str, sorted(os.sched_getaffinity(0)))) if hasattr(os, "sched_getaffinity") else "0"
    with LocalTransport() as t:
        assert t.prepare(manifest(BLOCKS[:1], pin=cores)) is None  # every core measures: nothing is left free


@needs_two
def test_cancelled_held_worker_is_gone():
    with LocalTransport() as t:
        held = t.prepare(manifest(BLOCKS[:1]))
        held.cancel()
        assert held.proc.poll() is not None


@needs_two
@pytest.mark.parametrize("ahead", [True, False])
def test_profile_with_workers_prepared_ahead_pools_every_worker_once(tmp_path, ahead):
    entries = [(k, BlockSpec.parse(k), None) for k in BLOCKS]
    # top-ups too: a CI target no entry meets in 3 workers, reachable by max_processes (worth_a_worker)
    m = Method(warmup_n=2, processes=3, rounds=4, max_processes=5, target_ci=1e-9, prepare_ahead=ahead)
    path, timing = profile(LOCAL, HARDCORE, RT, 1, m, tmp_path, progress=False, entries=entries)
    lut = Lut.load(Path(path))
    assert sorted(lut.entries) == sorted(BLOCKS)
    for e in lut.entries.values():
        assert e["n"] == 4 * e["workers"] and 3 <= e["workers"] <= 5
    split = timing["split"]
    # every worker after the first was started while another measured; one after another otherwise
    assert split.get("held", 0) == (split["processes"] - 1 if ahead else 0)
    assert lut.data["method"]["prepare_ahead"] is ahead


class FakeHeld:
    def __init__(self, manifest):
        self.worker, self.keys, self.cancelled = manifest["method"]["worker"], [e["key"] for e in manifest["entries"]], False

    def go(self, keys):
        yield {"type": "fingerprint"}
        for k in keys:
            yield {"type": "entry", "key": k, "worker": self.worker}

    def cancel(self):
        self.cancelled = True


class FakeTransport:
    """A transport at the boundary this test cares about (which worker is prepared when, for which entries)."""

    def __init__(self):
        self.prepared = []

    def prepare(self, manifest):
        self.prepared.append(FakeHeld(manifest))
        return self.prepared[-1]


def test_next_worker_guess_planned_then_first_top_up_then_same_entries():
    from profiler.ahead import Ahead

    keys = ["a", "b", "c"]
    t = FakeTransport()
    ahead = Ahead(t, lambda w, ks: {"method": {"worker": w}, "entries": [{"key": k} for k in ks]}, keys,
                  Method(processes=2, max_processes=4))
    have = {}
    for worker, todo in [(0, keys), (1, keys), (2, ["b", "c"]), (3, ["c"])]:
        lines, ready = ahead.start(worker, todo, {"method": {"worker": worker}, "entries": [{"key": k} for k in todo]},
                                   have, 2)
        assert ready is (worker > 0)  # each worker after the first was prepared while the one before measured
        assert [m["key"] for m in lines if m["type"] == "entry"] == todo
        for k in todo:
            have.setdefault(k, {})[worker] = {}
        if worker < 3:
            nxt = ahead.next
            assert nxt[0] == worker + 1
            # worker 1: the entries lacking it; worker 2 (first top-up): every entry; later: this worker's entries
            assert nxt[1] == ({"a", "b", "c"} if worker < 2 else set(todo))
    assert ahead.next is None  # max_processes reached: nothing more to prepare
    # a wrong guess (another worker index, or entries the held one did not load) is cancelled and started afresh
    ahead.next = (5, {"a"}, FakeHeld({"method": {"worker": 5}, "entries": [{"key": "a"}]}))
    held = ahead.next[2]
    lines, ready = ahead.start(5, ["a", "b"], {"method": {"worker": 5}, "entries": [{"key": "a"}, {"key": "b"}]},
                               have, 2)
    assert held.cancelled and not ready


@needs_two
@pytest.mark.parametrize("threads", [1, 2])
def test_sessions_load_on_every_core_then_every_thread_times_on_the_pinned_ones(threads):
    # the sessions are created (and make their first call) in one thread per core, then the whole process, the
    # runtime's own intra-op threads included, is moved onto the measuring cores
    m = manifest(BLOCKS)
    m["runtime"] = dict(RT, threads=threads)
    with LocalTransport() as t:
        lines = list(t.run(m))
    fp = next(x for x in lines if x["type"] == "fingerprint")
    done = lines[-1]
    allowed = sorted(os.sched_getaffinity(0))
    assert fp["pinned_cores"] == (allowed[-threads:] if len(allowed) > threads else allowed)
    assert done["affinity"] == fp["pinned_cores"]
    assert len([x for x in lines if x["type"] == "entry"]) == 3
    # two warm-up rounds in all, the first made while loading: one left on the pinned core
    assert done["split"]["warmup_s"] < done["split"]["setup_s"]
