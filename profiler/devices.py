"""Devices and their presets. ``local`` is built in (this machine, no SSH); others come from an inventory file
(``inventory.resolve_device``)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, Optional

from .errors import UnknownRuntime

# Runtime name -> the package a device needs to run it (what the error message tells the user to install).
RUNTIMES = {"onnxruntime": "onnxruntime", "tflite": "ai-edge-litert",
            # TFLite's benchmark_model binary driven by the agent (phones without a Python TFLite); no pip package
            "benchmark_model": "(the benchmark_model binary named by `benchmark_model = PATH` in the inventory)"}


@dataclass(frozen=True)
class Preset:
    """Runtime settings of a device class."""

    runtime: str = "onnxruntime"
    threads: int = 1  # intra-op threads, set explicitly in the runtime
    batch: int = 1
    providers: tuple = ("CPUExecutionProvider",)  # ONNX Runtime execution providers, in priority order
    opt_level: str = "all"  # ONNX Runtime graph optimisation level: what a deployment uses
    port: int = 22
    benchmark_model: Optional[str] = None  # path of TFLite's benchmark_model binary ON the device
    benchmark_model_args: tuple = ()  # extra flags for it, e.g. ("--use_gpu=true",)
    runs_per_sample: int = 10  # benchmark_model: timed runs per invocation; each invocation's median is a sample


PRESETS: Dict[str, Preset] = {
    "local": Preset(),
    "xeon": Preset(),
    "jetson": Preset(providers=("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
                     batch=1),
    "pi4": Preset(runtime="tflite", threads=4),
    "phone": Preset(runtime="tflite", threads=4, port=8022),
}


@dataclass(frozen=True)
class Device:
    name: str
    preset: Preset = field(default_factory=Preset)
    host: Optional[str] = None  # None: this machine, the agent runs as a subprocess
    port: int = 22
    user: Optional[str] = None
    key: Optional[str] = None
    known_hosts: Optional[str] = None
    python: str = "python3"
    workdir: str = "~/.cache/lutnas-agent"
    extra: dict = field(default_factory=dict)

    @property
    def is_local(self) -> bool:
        return self.host is None

    def runtime_settings(self, runtime: Optional[str] = None, threads: Optional[int] = None) -> dict:
        rt = runtime or self.preset.runtime
        if rt not in RUNTIMES:
            raise UnknownRuntime(f"unknown runtime {rt!r}; known: {', '.join(sorted(RUNTIMES))}")
        out = {"name": rt, "threads": int(threads or self.preset.threads), "providers": list(self.preset.providers),
               "opt_level": self.preset.opt_level}
        if rt in ("tflite", "benchmark_model") and self.preset.benchmark_model:
            # the agent falls back to the binary when the device has no Python TFLite (phones)
            out.update(benchmark_model=self.preset.benchmark_model,
                       benchmark_model_args=list(self.preset.benchmark_model_args),
                       runs_per_sample=self.preset.runs_per_sample)
        return out


LOCAL = Device("local", PRESETS["local"])


def with_overrides(device: Device, **kw) -> Device:
    preset = replace(device.preset, **{k: v for k, v in kw.items() if v is not None})
    return replace(device, preset=preset)
