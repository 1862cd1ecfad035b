"""LUT files: round trip, immutability, schema and space checks; the journal's recovery rules."""
import json
from dataclasses import replace

import pytest

from profiler.errors import BadLut, CorruptJournal, WouldOverwrite
from profiler.journal import Journal
from profiler.lut import SCHEMA_VERSION, Lut, boundary_key, lut_filename
from profiler.space import HARDCORE


def _entry(ms):
    return {"median_ms": ms, "p10_ms": ms * 0.98, "p90_ms": ms * 1.03, "mean_ms": ms, "std_ms": ms * 0.01,
            "ci95_ms": ms * 0.004, "n": 3, "samples_ms": [ms, ms, ms], "flags": []}


def make_lut():
    entries = {str(b): _entry(0.1 + 0.01 * i) for i, b in enumerate(HARDCORE.unique_blocks())}
    stem, ds, _ = HARDCORE.fixed_blocks()
    entries[f"pair:{stem}+{ds}"] = _entry(entries[str(stem)]["median_ms"] + entries[str(ds)]["median_ms"] - 0.05)
    rt = {"name": "onnxruntime", "threads": 1, "providers": ["CPUExecutionProvider"], "opt_level": "all"}
    return Lut.new(HARDCORE, "local", {"cpu_model": "test"}, rt, 1, {"target_ci": 0.01}, entries)


def test_round_trip(tmp_path):
    lut = make_lut()
    path = lut.save(tmp_path / lut_filename(lut.data["runtime"], 1))
    back = Lut.load(path, space=HARDCORE, device="local")
    assert back.data == lut.data
    assert back.data["schema_version"] == SCHEMA_VERSION and back.data["space"]["hash"] == HARDCORE.hash


def test_saved_file_is_sorted_json_and_never_overwritten(tmp_path):
    lut = make_lut()
    path = lut.save(tmp_path / "a.json")
    before = path.read_bytes()
    with pytest.raises(WouldOverwrite, match="never overwritten"):
        make_lut().save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind


def test_unknown_schema_version_is_refused_naming_the_file(tmp_path):
    lut = make_lut()
    lut.data["schema_version"] = 99
    path = lut.save(tmp_path / "future.json")
    with pytest.raises(BadLut, match=r"future\.json has schema_version 99"):
        Lut.load(path)


def test_space_hash_mismatch_is_refused(tmp_path):
    path = make_lut().save(tmp_path / "x.json")
    other = replace(HARDCORE, expansions=(3, 6))
    with pytest.raises(BadLut, match=f"hash {HARDCORE.hash}.*not.*hash {other.hash}"):
        Lut.load(path, space=other)


def test_other_device_and_garbage_refused(tmp_path):
    path = make_lut().save(tmp_path / "x.json")
    with pytest.raises(BadLut, match="measured on device 'local', not 'pi4'"):
        Lut.load(path, device="pi4")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(BadLut, match="not readable JSON"):
        Lut.load(tmp_path / "bad.json")
    with pytest.raises(BadLut, match="does not exist"):
        Lut.load(tmp_path / "missing.json")


def test_block_table_removes_the_measured_boundary_cost():
    lut = make_lut()
    stem, ds, head = HARDCORE.fixed_blocks()
    assert lut.data["boundaries"][boundary_key(stem)]["delta_ms"] == pytest.approx(0.05)
    table = lut.block_table()
    assert table[str(stem)] == pytest.approx(lut.median(str(stem)) - 0.05)
    assert table[str(head)] == lut.median(str(head))  # the head's output is the network's: nothing to remove
    assert lut.block_table(in_context=False)[str(stem)] == lut.median(str(stem))


def test_journal_drops_a_truncated_last_line_skips_a_corrupt_one_and_refuses_garbage(tmp_path, capsys):
    p = tmp_path / "j.jsonl"
    j = Journal(p)
    j.append({"type": "entry", "key": "a", "median_ms": 1.0})
    j.close()
    with open(p, "a") as f:
        f.write('{"type": "entry", "key": "b", "med')  # killed mid-write
    j2 = Journal(p)
    assert list(j2.by_worker()) == ["a"]
    j2.append({"type": "entry", "key": "b", "median_ms": 2.0})
    j2.close()
    assert [json.loads(x)["key"] for x in p.read_text().splitlines()] == ["a", "b"]
    p.write_text('{"type": "entry", "key": "a"}\ngarbage\n{"type": "done"}\n')
    assert [o["type"] for o in Journal(p).lines] == ["entry", "done"]  # the good lines around it are kept
    assert "line(s) 2 corrupt" in capsys.readouterr().err
    p.write_text('garbage\n[1]\n')
    with pytest.raises(CorruptJournal, match="has no readable line \\(line 1"):
        Journal(p)


def test_latest_prefers_newest_measurement_then_its_newest_calibration(tmp_path):
    from profiler.lut import latest, lut_dir

    d = lut_dir(tmp_path, "local", HARDCORE)
    d.mkdir(parents=True)
    names = ["20261101T000000Z-onnxruntime-t1-b1.json", "20261101T000000Z-onnxruntime-t1-b1-cal-20261102T000000Z.json",
             "20261105T000000Z-onnxruntime-t1-b1.json", "20261105T000000Z-onnxruntime-t1-b1-cal-20261106T000000Z.json",
             "20261105T000000Z-onnxruntime-t1-b1-cal-20261107T000000Z.json", ".journal-x.jsonl"]
    for n in names:
        (d / n).write_text("{}")
    assert latest(tmp_path, "local", HARDCORE).name == names[2]
    assert latest(tmp_path, "local", HARDCORE, calibrated=True).name == names[4]
    (d / names[4]).unlink()
    (d / names[3]).unlink()
    # the older LUT's calibration never wins over a newer measurement
    assert latest(tmp_path, "local", HARDCORE, calibrated=True).name == names[2]
    assert latest(tmp_path, "other", HARDCORE) is None


def test_fleet_progress_counts_an_entry_done_only_when_every_worker_pass_measured_it(tmp_path):
    """The journal holds one line per (key, worker): after the first of 3 worker passes, a third is done, not all."""
    import json

    from profiler.devices import LOCAL
    from profiler.fleet import Job

    path = tmp_path / ".journal-x.jsonl"
    job = Job(LOCAL, {}, 1, path, total=4, need=3)
    assert job.done() == 0  # no journal yet
    lines = [{"type": "fingerprint", "schema": 1}] + [{"type": "entry", "key": f"k{i}", "worker": 0} for i in range(4)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"type": "ent')  # a line being written
    assert job.done() == 1  # 4 of 12 (key, worker) units
    with open(path, "w") as f:
        f.write("".join(json.dumps({"type": "entry", "key": f"k{i}", "worker": w}) + "\n"
                        for w in range(3) for i in range(4)))
    assert job.done() == 4


def test_fleet_progress_leaves_out_a_worker_that_was_cut_off(tmp_path):
    """A worker that journaled 2 of its 4 keys before its connection dropped is set aside when the run resumes (its
    keys are measured again, whole): progress does not count it, before or after the rerun of that worker."""
    import json

    from profiler.devices import LOCAL
    from profiler.fleet import Job

    keys = [f"k{i}" for i in range(4)]
    path = tmp_path / ".journal-x.jsonl"
    job = Job(LOCAL, {}, 1, path, total=4, need=2, keys=keys)
    run = {"type": "run", "worker": 0, "keys": keys}
    cut = [run] + [{"type": "entry", "key": k, "worker": 0} for k in keys[:2]]
    path.write_text("".join(json.dumps(x) + "\n" for x in cut))
    assert job.done() == 0  # the old count: 2 of 8 (key, worker) units, i.e. 1 entry
    whole = [run] + [{"type": "entry", "key": k, "worker": 0} for k in keys]
    path.write_text("".join(json.dumps(x) + "\n" for x in cut + whole))
    assert job.done() == 2  # worker 0 whole: 4 of 8 units


def test_the_host_refuses_an_agent_of_another_protocol_version():
    from profiler.errors import DeviceFailed
    from profiler.protocol import PROTOCOL, parse_line

    assert parse_line("lutnas-pid 12", "dev") is None
    assert parse_line('{"type": "fingerprint", "schema": %d}' % PROTOCOL, "dev")["schema"] == PROTOCOL
    with pytest.raises(DeviceFailed, match=r"pi4: the agent speaks protocol version 2, this host 1"):
        parse_line('{"type": "fingerprint", "schema": 2}', "pi4")
    with pytest.raises(DeviceFailed, match=r"pi4: the agent printed a line that is not a record"):
        parse_line('{"type": "entry", "key": ', "pi4")


def test_entry_keys_have_one_grammar_and_round_trip():
    from profiler.keys import EntryKey, anchor_key, is_pair, lut_key, net_key, pair_key
    from profiler.space import HARDCORE, Arch

    a, b = HARDCORE.unique_blocks()[3:5]
    arch = Arch(((0, 1), (2, 3, 4), (5, 6), (7, 8, 9, 10), (11, 0)))
    keys = {str(a): ("block", (a, None)), pair_key(a, b): ("pair", (a, b)), anchor_key(str(a)): ("anchor", (a, None)),
            lut_key(pair_key(a, b)): ("lut", (a, b)), net_key(arch): ("net", None)}
    for key, (kind, blocks) in keys.items():
        parsed = EntryKey.parse(key)
        assert parsed.kind == kind and str(parsed) == key and is_pair(key) == (kind == "pair")
        if blocks is not None:
            assert parsed.blocks() == blocks
    assert Arch.parse(EntryKey.parse(net_key(arch)).body) == arch
    with pytest.raises(ValueError, match="names a network, not blocks"):
        EntryKey.parse(net_key(arch)).blocks()
    with pytest.raises(ValueError, match="unknown entry key prefix 'cell'"):
        EntryKey.parse("cell:x")
    with pytest.raises(ValueError, match="lacks '\\+' between its two blocks"):
        EntryKey.parse(f"pair:{a}").blocks()
