"""A LUT carries the exact settings it was measured with; checks against it (validate, search --verify-on) run with
those, not with the device preset's."""
import json
from pathlib import Path

from profiler.devices import LOCAL, PRESETS, Device
from profiler.lut import Lut
from profiler.method import Method

LUT = sorted((Path(__file__).resolve().parents[1] / "luts/local/hardcore-mbv3").glob("*-b1.json"))[0]


def test_runtime_for_keeps_the_luts_providers_opt_level_and_threads(tmp_path):
    data = json.loads(LUT.read_text())
    data["runtime"].update(providers=["CUDAExecutionProvider", "CPUExecutionProvider"], opt_level="basic", threads=3)
    lut = Lut(data)
    rt = lut.runtime_for(LOCAL)
    assert (rt["name"], rt["threads"], rt["providers"], rt["opt_level"]) == (
        "onnxruntime", 3, ["CUDAExecutionProvider", "CPUExecutionProvider"], "basic")
    assert LOCAL.preset.opt_level == "all" and LOCAL.preset.providers == ("CPUExecutionProvider",)
    assert lut.run_settings == {"runtime": "onnxruntime", "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"],
                                "opt_level": "basic", "threads": 3, "batch": 1}


def test_runtime_for_keeps_what_only_the_device_knows():
    data = json.loads(LUT.read_text())
    data["runtime"].update(name="tflite", threads=4)
    phone = Device("phone", PRESETS["phone"].__class__(**{**PRESETS["phone"].__dict__, "benchmark_model": "/bm"}))
    rt = Lut(data).runtime_for(phone)
    assert rt["name"] == "tflite" and rt["benchmark_model"] == "/bm" and rt["threads"] == 4


def test_method_is_the_one_recorded_and_ignores_unknown_keys():
    data = json.loads(LUT.read_text())
    data["method"]["from_the_future"] = 1
    m = Lut(data).method()
    assert isinstance(m, Method) and m.processes == data["method"]["processes"] and m.rounds == data["method"]["rounds"]
