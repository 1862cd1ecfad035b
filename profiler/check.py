"""``profile --device NAME --check``: what a device has (Python, numpy, runtime, accelerator) and, when something is
missing, the exact command that installs it with that device's own Python. Runs the agent's ``--check`` mode through
the same transport as a measurement, so a check that passes means a run will start."""
from __future__ import annotations

import shlex
import sys
from typing import Callable, List, Optional

from .devices import RUNTIMES, Device
from .errors import ConnectionFailed, ExitStatus
from .transport import AgentExit, LocalTransport

# The accelerator each ONNX Runtime execution provider needs, and the package that brings it.
GPU_PROVIDERS = {"CUDAExecutionProvider": "onnxruntime-gpu", "TensorrtExecutionProvider": "onnxruntime-gpu"}


def agent_check(transport, runtime: dict) -> List[dict]:
    """The agent's ``--check`` lines (fingerprint, then check or error) through ``transport``."""
    args = ["--check", runtime["name"]]
    if runtime.get("benchmark_model"):
        args.append(runtime["benchmark_model"])
    lines = []
    try:
        for msg in transport.run({"job": "check", "entries": []}, args=args):
            lines.append(msg)
    except AgentExit as exc:
        if not any(m.get("type") == "error" for m in lines):
            lines.append({"type": "error", "code": "agent", "message": str(exc)})
    return lines


def report(device: Device, runtime: dict, lines: List[dict], out=None) -> int:
    """Print what the device has and what to install; returns 0 when the runtime can run, else RUNTIME_MISSING."""
    out = out or sys.stdout
    fp = next((m for m in lines if m.get("type") == "fingerprint"), {})
    chk = next((m for m in lines if m.get("type") == "check"), {})
    err = next((m for m in lines if m.get("type") == "error"), None)
    python = chk.get("python_executable") or device.python
    pip = f"{shlex.quote(python)} -m pip install"
    todo = []
    w = out.write
    w(f"device      {device.name} ({'this machine' if device.is_local else device.host})\n")
    if fp:
        w(f"cpu         {fp.get('cpu_model')} x{fp.get('cpu_count')} ({fp.get('machine')}), {fp.get('os')}\n")
        w(f"python      {fp.get('python')} ({python})\n")
        w(f"numpy       {fp.get('numpy')}\n")
        w(f"governor    {fp.get('governor')}\n")
    if err is not None and err.get("package") == "numpy":
        w("numpy       MISSING\n")
        todo.append(f"{pip} numpy")
    rt_name = runtime["name"]
    if chk.get("benchmark_model"):
        state = "ok" if chk.get("ok") else "MISSING (not an executable file)"
        w(f"runtime     {rt_name} via {chk['benchmark_model']}: {state}\n")
        if not chk.get("ok"):
            todo.append(f"copy TFLite's benchmark_model binary for {fp.get('machine', 'this CPU')} to "
                        f"{chk['benchmark_model']} on the device and chmod +x it")
    elif chk:
        w(f"runtime     {rt_name}: {fp.get('runtime') or 'MISSING'}\n")
        if not chk.get("ok"):
            todo.append(f"{pip} {RUNTIMES.get(rt_name, rt_name)}")
    if "providers_available" in fp:
        avail = fp["providers_available"]
        w(f"providers   {', '.join(avail)}\n")
        wanted = [p for p in runtime.get("providers", []) if p in GPU_PROVIDERS and p not in avail]
        if wanted and chk.get("ok"):
            w(f"            wanted but not available: {', '.join(wanted)}\n")
            todo.append(f"{pip} onnxruntime-gpu   (on a Jetson: the onnxruntime-gpu wheel for its JetPack from "
                        "NVIDIA's Jetson Zoo; then `pip uninstall onnxruntime`)")
    w(f"accelerator {fp.get('accelerator') or 'none found'}\n")
    if err is not None and err.get("package") != "numpy" and not chk:
        w(f"error       {err.get('message')}\n")
    if todo:
        w("to install:\n" + "".join(f"  {t}\n" for t in todo))
        return int(ExitStatus.RUNTIME_MISSING)
    if err is not None and not chk:
        return int(ExitStatus.DEVICE_FAILED)
    w("ready\n")
    return 0


def check_local(device: Device, runtime: dict) -> int:
    """Check this machine (``--device local --check``)."""
    with LocalTransport(sys.executable) as t:
        return report(device, runtime, agent_check(t, runtime))


def check_remote(device: Device, runtime: dict, trust_new_host: bool = False,
                 transport_factory: Optional[Callable] = None) -> int:
    """Check a device over SSH; a device without the configured Python is reported with what to install."""
    from .ssh import SSHTransport

    factory = transport_factory or (lambda: SSHTransport(device, trust_new_host))
    try:
        with factory() as t:
            lines = agent_check(t, runtime)
    except ConnectionFailed as exc:
        if "was not found on the device" not in str(exc):
            raise
        sys.stdout.write(f"device      {device.name} ({device.host})\npython      MISSING: {device.python!r} is "
                         "not on the device's PATH\nto install:\n  sudo apt install python3 python3-numpy   "
                         "(Termux: pkg install python python-numpy), or set python = PATH in the inventory\n")
        return int(ExitStatus.RUNTIME_MISSING)
    return report(device, runtime, lines)
