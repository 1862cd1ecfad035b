"""TFLite's benchmark_model binary: the output parser on real samples of the tool (tests/data/benchmark_model), and
the agent driving a binary (a stand-in that times the model with ai-edge-litert and prints the tool's format)."""
import sys
from pathlib import Path

import pytest

from agents.benchmark_model import BenchmarkOutputError, parse_output, sample_us
from profiler.devices import Device, PRESETS
from profiler.lut import Lut
from profiler.runner import profile
from profiler.space import HARDCORE, BlockSpec

DATA = Path(__file__).parent / "data" / "benchmark_model"

# file: (regular count, regular median or avg used as the sample (us), warm-up count, init us, inference avg us)
EXPECTED = {
    "termux_aarch64_float32.txt": (1000, 51891, 9, 119515, 63743.2),
    "termux_aarch64_int4.txt": (24, 42405, 50, 143669, 42435.4),
    "linux_x86_64.txt": (70, 14290.9, 35, 52687, 14290.9),
    "android_count1_warmup.txt": (50, 576856, 1, 102320, 699438),
    "android_nnapi_indented.txt": (520, 1885.74, 1, 66002, 1885.74),
    "riscv64_op_profiling.txt": (50, 2.95034e6, 1, 17187, 2.95034e6),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parser_on_real_outputs(name):
    count, sample, warm_count, init, inf_avg = EXPECTED[name]
    r = parse_output((DATA / name).read_text())
    assert r["regular"]["count"] == count
    assert sample_us(r) == pytest.approx(sample)
    assert r["warmup"]["count"] == warm_count
    assert r["init_us"] == init and r["inference_avg_us"] == pytest.approx(inf_avg)
    reg = r["regular"]
    if "min_us" in reg:
        assert reg["min_us"] <= sample_us(r) <= reg["max_us"]
    assert r["mem_overall_mb"] > 0


def test_parser_details():
    r = parse_output((DATA / "termux_aarch64_float32.txt").read_text())
    assert r["regular"]["p95_us"] == 68628 and r["warmup"]["median_us"] == 51962
    assert r["delegated"] == [2168, 2168, "TfLiteXNNPackDelegate"]
    assert r["model_size_mb"] == pytest.approx(24.6229) and r["init_session_ms"] == pytest.approx(119.515)
    old = parse_output((DATA / "riscv64_op_profiling.txt").read_text())
    assert old["regular"]["avg_us"] == 2950340.0 and "median_us" not in old["regular"]
    assert old["threads"] == 4  # and the operator tables' "Timings (microseconds): count=50" line was ignored
    assert old["regular"]["first_us"] == 2990275


def test_parser_refuses_a_failed_run_naming_the_error():
    with pytest.raises(BenchmarkOutputError, match="Benchmarking failed"):
        parse_output((DATA / "termux_aarch64_int8_failed.txt").read_text())
    with pytest.raises(BenchmarkOutputError, match="empty"):
        parse_output("")


FAKE = '''#!{python}
"""Stand-in for TFLite's benchmark_model: times the model with ai-edge-litert, prints the tool's output format."""
import sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter
a = dict(x[2:].split("=", 1) for x in sys.argv[1:])
print("INFO: STARTING!")
print("INFO: Graph: [%s]" % a["graph"])
print("INFO: #threads used for CPU inference: [%s]" % a["num_threads"])
t = time.perf_counter()
it = Interpreter(model_path=a["graph"], num_threads=int(a["num_threads"]))
it.allocate_tensors()
init = (time.perf_counter() - t) * 1e6
print("INFO: Initialized session in %.3fms." % (init / 1e3))
def run(n):
    xs = []
    for _ in range(n):
        t = time.perf_counter(); it.invoke(); xs.append((time.perf_counter() - t) * 1e6)
    x = np.array(xs)
    print("INFO: count=%d first=%d curr=%d min=%d max=%d avg=%g std=%d p5=%d median=%d p95=%d" % (
        n, x[0], x[-1], x.min(), x.max(), x.mean(), x.std(), np.percentile(x, 5), np.median(x), np.percentile(x, 95)))
    print("")
    return x
w = run(int(a["warmup_runs"]))
r = run(int(a["num_runs"]))
print("INFO: Inference timings in us: Init: %d, First inference: %d, Warmup (avg): %g, Inference (avg): %g"
      % (init, w[0], w.mean(), r.mean()))
'''


@pytest.fixture
def fake_binary(tmp_path):
    path = tmp_path / "benchmark_model"
    path.write_text(FAKE.format(python=sys.executable))
    path.chmod(0o755)
    return path


def test_agent_drives_the_binary_and_journals_its_samples(tmp_path, fake_binary):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    from tests.conftest import TFLITE_BLOCKS, fast

    from dataclasses import replace

    dev = Device("phone-local", replace(PRESETS["phone"], runtime="benchmark_model", threads=1,
                                        benchmark_model=str(fake_binary), runs_per_sample=5))
    rt = dev.runtime_settings()
    assert rt["name"] == "benchmark_model" and rt["benchmark_model"] == str(fake_binary)
    blocks = TFLITE_BLOCKS[:2]
    path, _ = profile(dev, HARDCORE, rt, 1, fast(min_n=6, budget_s=0.05), tmp_path / "luts", progress=False,
                      entries=[(b, BlockSpec.parse(b), None) for b in blocks])
    lut = Lut.load(path)
    assert set(lut.data["entries"]) == set(blocks)
    assert lut.data["runtime"]["version"] == f"benchmark_model {fake_binary}"
    for e in lut.data["entries"].values():
        assert e["n"] >= 6 and 0 < e["median_ms"] < 50


def test_missing_binary_fails_the_device_with_the_path(tmp_path):
    from dataclasses import replace

    from profiler.errors import DeviceFailed
    from tests.conftest import ORT_BLOCKS, fast

    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    dev = Device("phone-local", replace(PRESETS["phone"], runtime="benchmark_model",
                                        benchmark_model=str(tmp_path / "nope")))
    with pytest.raises(DeviceFailed, match="nope"):
        profile(dev, HARDCORE, dev.runtime_settings(), 1, fast(), tmp_path / "luts", progress=False,
                entries=[(ORT_BLOCKS[0], BlockSpec.parse(ORT_BLOCKS[0]), None)])


@pytest.mark.ssh
def test_phone_preset_over_ssh_drives_the_binary(tmp_path, fake_binary):
    """The phone path end to end: Termux-like device over SSH, the parser pushed next to the agent."""
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    from tests.sshd import Sshd
    from tests.conftest import TFLITE_BLOCKS, inventory, lut_of, run_fleet

    sshd = Sshd(tmp_path / "sshd").start()
    try:
        inv = inventory(tmp_path, sshd.device_toml("phone", "phone", tmp_path / "w", runtime="benchmark_model",
                                                   benchmark_model=str(fake_binary), threads=1, runs_per_sample=5))
        from tests.conftest import fast

        assert run_fleet(inv, tmp_path / "luts", ["phone"], TFLITE_BLOCKS[:1], fast(min_n=6, budget_s=0.05)) == 0
        lut = lut_of(tmp_path / "luts", "phone")
        assert lut.data["runtime"]["version"] == f"benchmark_model {fake_binary}"
        assert set(lut.data["entries"]) == set(TFLITE_BLOCKS[:1])
    finally:
        sshd.stop()
