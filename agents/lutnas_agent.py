#!/usr/bin/env python3
"""lutnas measurement agent: runs ON the device, with nothing but Python >= 3.8, numpy and the runtime.

    python3 lutnas_agent.py MANIFEST.json      benchmark the manifest's entries
    python3 lutnas_agent.py --check [RUNTIME [BINARY]]  print the fingerprint and what the runtime needs

It prints JSON lines on stdout, flushed one by one, so a host that reads them over SSH (or from a subprocess) can
journal each as it arrives:

    {"type": "fingerprint", ...}                     first: the device as this process sees it
    {"type": "progress", "round": r, "active": a}    now and then
    {"type": "entry", "key": ..., "median_ms": ...}  one per finished entry, raw samples included
    {"type": "error", "key": ..., "message": ...}    an entry that could not be measured
    {"type": "done", ...}                            last
    {"type": "ready", ...}                           a held worker (manifest "hold"): prepared, waiting on stdin

Method (pyperf's worker, adapted to many small models): explicit runtime threads, pinned to cores where the OS
allows, warm-up by count *and* time, then rounds in a fresh random order each round so drift hits all entries alike.
Two modes (``method.mode``):

* ``steady``: each round runs a *burst* of ``burst`` consecutive calls of one entry, drops the first
  ``burst_warmup`` of them (caches still hold the previous entry) and records the median of the rest as one sample:
  the warm, call-after-call time a deployed model sees and runtimes' own benchmark tools report. The burst median,
  not each call, is the sample because the calls of one burst share one cache and frequency state: a CI over them
  would count correlated calls as independent and come out too narrow.
* ``interleaved`` (the host's default): one timed call per entry per round, so every call starts with caches
  holding another model (the time of a device that runs many models in turn).

Each entry stops once the bootstrap 95 % CI half-width of its median is <= target (1 % by default) or its time
budget is spent.

Exit codes: 0 done, 2 bad manifest, 3 runtime package missing.
"""
import time

_T_START = time.perf_counter()  # before the imports: the done line reports how long they took
import gc
import glob
import json
import math
import os
import platform
import socket
import subprocess
import sys

SCHEMA = 1  # version of the line protocol; the host refuses other versions

_ALLOWED = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None  # before the line below
if os.environ.get("LUTNAS_AGENT_CORES") and _ALLOWED:
    try:  # a worker prepared ahead starts on the cores the measuring worker leaves free (see hold), imports included
        os.sched_setaffinity(0, set(int(c) for c in os.environ["LUTNAS_AGENT_CORES"].split(",")))
    except (OSError, ValueError):
        pass

try:
    import numpy as np
except ImportError:  # pragma: no cover - exercised on bare devices
    sys.stdout.write(json.dumps({"type": "error", "code": "runtime_missing", "package": "numpy",
                                 "message": "numpy is not installed"}) + "\n")
    sys.exit(3)

RUNTIME_PACKAGES = {
    "onnxruntime": ["onnxruntime"],
    "tflite": ["ai_edge_litert", "tflite_runtime", "tensorflow"],
    "benchmark_model": [],  # TFLite's benchmark_model binary (the manifest names it), no Python package
}


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


# --- fingerprint ---------------------------------------------------------------------------------------------------
def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _cpu_model():
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        for key in ("model name", "Hardware", "Model", "cpu model"):
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def temperatures():
    """Thermal zones (°C) where sysfs exposes them, plus the Raspberry Pi's vcgencmd reading."""
    temps = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        t = _read(zone + "/temp")
        if t and t.lstrip("-").isdigit():
            temps[_read(zone + "/type") or os.path.basename(zone)] = int(t) / 1000.0
    try:
        out = subprocess.run(["vcgencmd", "measure_temp"], capture_output=True, text=True, timeout=2).stdout
        if "temp=" in out:
            temps["vcgencmd"] = float(out.split("=")[1].split("'")[0])
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    return temps


def frequencies():
    freqs = {}
    for cpu in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")):
        v = _read(cpu)
        if v and v.isdigit():
            freqs[cpu.split("/")[5]] = int(v) // 1000  # MHz
    return freqs


def accelerator():
    if os.path.exists("/etc/nv_tegra_release"):
        return "jetson: " + (_read("/etc/nv_tegra_release") or "").splitlines()[0]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def runtime_info(name):
    """(module, version) of the first importable package for ``name``, or (None, None)."""
    for pkg in RUNTIME_PACKAGES.get(name, [name]):
        try:
            mod = __import__(pkg)
        except ImportError:
            continue
        return mod, "%s %s" % (pkg, getattr(mod, "__version__", "?"))
    return None, None


def _loadavg():
    """1, 5 and 15 minute load averages (None where the OS has none): other work on the device inflates timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


QEMU_NAMES = {"armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "i686": "i386"}


def _parent(pid):
    stat = _read("/proc/%d/stat" % pid) or ""
    try:
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return 0


def emulation():
    """Evidence, as short phrases, that this process runs under an emulator (qemu-user) rather than on a CPU of
    its own architecture; empty on real hardware.

    qemu-user answers uname() with the guest's machine and hides itself from /proc/self, but not from the rest
    of /proc: the kernel's /proc/cpuinfo describes the host's CPU (qemu < 8.2), a parent process's exe link
    names the qemu interpreter binfmt_misc started it with, and where binfmt_misc is visible it says that this
    machine's own binaries go through qemu.
    """
    machine = platform.machine().lower()
    found = []
    cpuinfo = _read("/proc/cpuinfo") or ""
    x86_cpu = "vendor_id" in cpuinfo or "GenuineIntel" in cpuinfo or "AuthenticAMD" in cpuinfo
    if machine.startswith(("aarch64", "arm")) and x86_cpu:
        found.append("/proc/cpuinfo describes an x86 CPU under %s" % machine)
    elif machine in ("x86_64", "amd64", "i386", "i686") and "CPU implementer" in cpuinfo:
        found.append("/proc/cpuinfo describes an ARM CPU under %s" % machine)
    name = "/proc/sys/fs/binfmt_misc/qemu-" + QEMU_NAMES.get(machine, machine)
    reg = _read(name)
    if reg and reg.splitlines()[0] == "enabled":
        found.append("%s is enabled" % name)
    pid, hops = os.getppid(), 0
    while pid > 1 and hops < 4:
        try:
            exe = os.readlink("/proc/%d/exe" % pid)
        except OSError:
            exe = ""
        if "qemu" in os.path.basename(exe):
            found.append("parent process %d runs %s" % (pid, exe))
            break
        pid, hops = _parent(pid), hops + 1
    return found


def fingerprint(runtime_name, pinned, rt=None):
    uname = platform.uname()
    mod, version = runtime_info(runtime_name)
    if rt is not None and uses_binary(rt):
        version = binary_info(rt)
    fp = {
        "type": "fingerprint", "schema": SCHEMA, "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(), "machine": uname.machine,
        "os": "%s %s" % (uname.system, uname.release), "kernel": uname.version,
        "python": platform.python_version(), "numpy": np.__version__, "runtime": version,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "temperatures_c": temperatures(), "freq_mhz": frequencies(), "accelerator": accelerator(),
        "pinned_cores": pinned, "loadavg": _loadavg(),
    }
    evidence = emulation()
    fp["emulated"] = bool(evidence)
    if evidence:
        fp["emulation"] = evidence
    if mod is not None and runtime_name == "onnxruntime":
        fp["providers_available"] = mod.get_available_providers()
    return fp


# --- runtimes ------------------------------------------------------------------------------------------------------
def _dtype(name):
    return {"float32": np.float32, "float16": np.float16, "int8": np.int8, "uint8": np.uint8}.get(name, np.float32)


class OrtRunner(object):
    """One ONNX Runtime session with explicit threads and providers; ``__call__`` runs one inference."""

    def __init__(self, ort, path, shape, rt):
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(rt.get("threads", 1))
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = rt.get("opt_level", "all")
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[level]
        if int(rt.get("threads", 1)) > 1:
            so.add_session_config_entry("session.intra_op.allow_spinning", "1")
        providers = rt.get("providers") or ["CPUExecutionProvider"]
        self.sess = ort.InferenceSession(path, sess_options=so, providers=providers)
        self.providers = self.sess.get_providers()
        inp = self.sess.get_inputs()[0]
        self.feed = {inp.name: np.random.RandomState(0).standard_normal(shape).astype(np.float32)}

    def __call__(self):
        self.sess.run(None, self.feed)


class TfliteRunner(object):
    """One TFLite interpreter (XNNPACK is the default CPU delegate for float models); times ``invoke``."""

    def __init__(self, mod, path, shape, rt):
        name = mod.__name__
        if name == "ai_edge_litert":
            from ai_edge_litert.interpreter import Interpreter
        elif name == "tflite_runtime":
            from tflite_runtime.interpreter import Interpreter
        else:
            Interpreter = mod.lite.Interpreter
        self.interp = Interpreter(model_path=path, num_threads=int(rt.get("threads", 1)))
        self.interp.allocate_tensors()
        det = self.interp.get_input_details()[0]
        x = np.random.RandomState(0).standard_normal(det["shape"]).astype(det["dtype"])
        self.interp.set_tensor(det["index"], x)
        self.providers = ["xnnpack"]

    def __call__(self):
        self.interp.invoke()


def uses_binary(rt):
    """Whether TFLite runs through the benchmark_model binary: asked for, or the fallback where no Python TFLite is."""
    if rt["name"] == "benchmark_model":
        return True
    return rt["name"] == "tflite" and bool(rt.get("benchmark_model")) and runtime_info("tflite")[0] is None


def binary_info(rt):
    """'benchmark_model PATH' when the binary named in the manifest is executable here, else None."""
    path = rt.get("benchmark_model")
    if path and os.path.isfile(os.path.expanduser(path)) and os.access(os.path.expanduser(path), os.X_OK):
        return "benchmark_model " + path
    return None


def _parse_benchmark_output(text):
    # beside this file (sys.path[0]) both in the checkout and where the SSH transport pushes the two files
    from benchmark_model import parse_output, sample_us
    res = parse_output(text)
    return res, sample_us(res)


class BenchmarkModelRunner(object):
    """TFLite through the ``benchmark_model`` binary (phones without a Python TFLite). One call runs the binary
    once: ``runs_per_sample`` timed runs after a one-run warm-up; their median (the tool's, or its average on old
    builds) is one sample. ``last`` = (sample seconds, timed seconds spent), read by ``measure`` in place of its own
    clock, which here would time process start-up and model loading."""

    def __init__(self, rt, path, shape):
        binary = os.path.expanduser(rt["benchmark_model"])
        runs = int(rt.get("runs_per_sample", 10))
        self.cmd = [binary, "--graph=" + path, "--num_threads=%d" % int(rt.get("threads", 1)),
                    "--num_runs=%d" % runs, "--warmup_runs=1", "--min_secs=0", "--warmup_min_secs=0"]
        self.cmd += list(rt.get("benchmark_model_args", []))
        self.providers = ["benchmark_model"]
        self.last = None
        self()  # fail here, per entry, if the binary cannot run this model

    def __call__(self):
        out = subprocess.run(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if out.returncode != 0:
            raise RuntimeError("benchmark_model exited with status %d: %s"
                               % (out.returncode, " | ".join(out.stdout.strip().splitlines()[-3:])))
        res, sample = _parse_benchmark_output(out.stdout)
        reg = res["regular"]
        self.last = (sample / 1e6, reg["count"] * reg.get("avg_us", sample) / 1e6)


def make_runner(rt, path, shape):
    if uses_binary(rt):
        return BenchmarkModelRunner(rt, path, shape)
    mod, _ = runtime_info(rt["name"])
    if rt["name"] == "onnxruntime":
        return OrtRunner(mod, path, shape, rt)
    if rt["name"] == "tflite":
        return TfliteRunner(mod, path, shape, rt)
    raise ValueError("unknown runtime %r" % rt["name"])


# --- statistics ----------------------------------------------------------------------------------------------------
def bootstrap_ci(samples, n_boot=1000, seed=0):
    """Half-width of the bootstrap 95 % percentile CI of the median."""
    x = np.asarray(samples)
    rng = np.random.RandomState(seed)
    meds = np.median(x[rng.randint(0, len(x), size=(n_boot, len(x)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return float(hi - lo) / 2.0


def order_ci(samples):
    """Half-width of the distribution-free 95 % CI of the median from order statistics (binomial ranks, normal
    approximation): for the thousands of samples the host pools it matches the bootstrap within a few per cent and
    costs a sort instead of 1000 medians."""
    x = np.sort(np.asarray(samples))
    n, h = len(x), 1.959964 * math.sqrt(len(x)) / 2.0
    lo, hi = max(0, int(math.floor(n / 2.0 - h))), min(n - 1, int(math.ceil(n / 2.0 + h)))
    return float(x[hi] - x[lo]) / 2.0


def summarize(key, samples_s, method, converged):
    """An entry's line from its samples; ``method["bootstrap"]`` 0 takes the CI from order statistics instead."""
    x = np.asarray(samples_s) * 1e3
    med, mean, std = float(np.median(x)), float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    n_boot = method.get("bootstrap", 1000)
    ci = bootstrap_ci(x, n_boot, method.get("seed", 0)) if n_boot else order_ci(x)
    flags = []
    if not converged:
        flags.append("ci_not_reached")
    if mean and std >= 0.10 * mean:
        flags.append("unstable_std")  # pyperf: std >= 10 % of the mean
    if x.max() >= 1.5 * mean or x.min() <= 0.5 * mean:
        flags.append("outliers")  # pyperf: min or max 50 % away from the mean
    return {
        "type": "entry", "key": key, "median_ms": med, "mean_ms": mean, "std_ms": std,
        "p10_ms": float(np.percentile(x, 10)), "p90_ms": float(np.percentile(x, 90)), "ci95_ms": ci,
        "n": int(len(x)), "samples_ms": [round(float(v), 5) for v in x], "flags": flags,
    }


# --- measurement ---------------------------------------------------------------------------------------------------
SPLIT = {"setup_s": 0.0, "warmup_s": 0.0, "timed_s": 0.0, "kept_s": 0.0}  # where a run's seconds went


def timed(runner, timer, method):
    """One sample of ``runner`` and the timed seconds it cost: one call (interleaved), or the median of a burst's
    calls after its first ``burst_warmup`` (steady)."""
    steady = method.get("mode", "interleaved") == "steady"
    n = int(method.get("burst", 10)) if steady else 1
    drop = int(method.get("burst_warmup", 3)) if steady else 0
    kept, cost = [], 0.0
    for i in range(n):
        t = timer()
        runner()
        dt = timer() - t
        c = dt
        external = getattr(runner, "last", None)  # a runner that times itself (benchmark_model)
        if external is not None:
            dt, c = external
        cost += c
        if i >= drop:
            kept.append(dt)
    SPLIT["timed_s"] += cost
    SPLIT["kept_s"] += sum(kept)
    return (float(np.median(kept)) if len(kept) > 1 else kept[0]), cost


def choose_cores(threads, spec):
    """(cores to measure on, the other allowed cores) for ``threads`` runtime threads; (None, []) where the OS
    offers no affinity or ``spec`` is none. auto: the last cores, away from core 0's interrupts."""
    if spec in (None, "none") or not hasattr(os, "sched_setaffinity"):
        return None, []
    allowed = _ALLOWED or sorted(os.sched_getaffinity(0))  # the process's own, before any start-up narrowing
    if spec == "auto":
        cores = allowed[-threads:] if len(allowed) > threads else allowed
    else:
        cores = [int(c) for c in str(spec).split(",")]
    return cores, [c for c in allowed if c not in cores]


def thread_ids():
    """This process's thread ids (Linux), or [0] (the calling thread) where /proc cannot list them."""
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def set_affinity(cores):
    """Move every thread of this process (a runtime's pool made before too) onto ``cores``; False if refused."""
    try:
        for t in thread_ids():
            try:
                os.sched_setaffinity(t, set(cores))
            except ProcessLookupError:  # a thread that ended meanwhile
                pass
    except OSError:
        return False
    return True


def pin_cores(threads, spec):
    """Pin this process to ``threads`` cores (the last ones, away from core 0's interrupts) where the OS allows."""
    cores, _ = choose_cores(threads, spec)
    if cores is None or not set_affinity(cores):
        return None
    return cores


def load_runners(manifest, base_dir, spread=None, pinned=None):
    """A runner per entry of the manifest (an error line for each that cannot load), the number of errors, and
    whether each runner has made its first call.

    With ONNX Runtime and ``spread`` naming several cores, the sessions are created, and make their first call (its
    one-off initialisation, 3-5x a warm call), in one thread per core: half the wall time on 2 cores, nothing timed
    meanwhile (issue 18). Every thread of the process is then moved onto ``pinned``, where the timing happens."""
    entries = manifest["entries"]
    parallel = spread is not None and len(spread) > 1 and len(entries) > 1 and not uses_binary(manifest["runtime"]) \
        and manifest["runtime"]["name"] == "onnxruntime"

    def one(e):
        path = e["model"] if os.path.isabs(e["model"]) else os.path.join(base_dir, e["model"])
        try:
            runner = make_runner(manifest["runtime"], path, tuple(e["shape"]))
            if parallel:
                runner()
            return e["key"], runner, None
        except Exception as exc:  # one bad model must not stop the others
            return e["key"], None, exc

    if parallel:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(len(spread), initializer=lambda: set_affinity_self(spread)) as ex:
            results = list(ex.map(one, entries))
    else:
        results = [one(e) for e in entries]
    if parallel and pinned:
        set_affinity(pinned)  # a runtime's own threads, made in the pool threads, included
    runners, errors = {}, 0
    for key, runner, exc in results:
        if runner is None:
            errors += 1
            emit({"type": "error", "key": key, "message": "%s: %s" % (type(exc).__name__, exc)})
        else:
            runners[key] = runner
    return runners, errors, parallel


def process_affinity():
    """The cores any thread of this process may run on (the union over its threads), or None where unknown."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cores = set()
    for t in thread_ids():
        try:
            cores |= os.sched_getaffinity(t)
        except OSError:  # a thread that ended meanwhile
            pass
    return sorted(cores or os.sched_getaffinity(0))


def set_affinity_self(cores):
    try:
        os.sched_setaffinity(0, set(cores))
    except OSError:
        pass


def warm_up(runners, n, seconds, timer=time.perf_counter):
    """Every runner n times, in rounds, and more rounds until ``seconds`` have passed; the seconds it took."""
    t0, rounds = timer(), 0
    while runners and (rounds < n or timer() - t0 < seconds):
        for k in runners:
            runners[k]()
        rounds += 1
    return timer() - t0


def hold(manifest, base_dir, threads):
    """A worker prepared ahead (``manifest["hold"]``, issue 18): start, imports, sessions and all but the last
    warm-up round run on the cores the measurement does not use, while the host's previous worker measures; then
    ``ready`` and a wait for the host's line on stdin: {"go": true, "keys": [...]} times those entries (a subset of
    the manifest's), anything else ends the process. Returns (runners, errors, pinned cores, the warm-up rounds
    still to run), or None when told to stop."""
    method = manifest.get("method", {})
    cores, spare = choose_cores(threads, method.get("pin", "auto"))
    if spare:
        set_affinity(spare)
    t = time.perf_counter()
    runners, errors, warmed = load_runners(manifest, base_dir, spare)
    SPLIT["prep_s"] = time.perf_counter() - t
    n = int(method.get("warmup_n", 3))
    SPLIT["prep_warmup_s"] = warm_up(runners, max(0, n - 1 - warmed), 0.0)
    emit({"type": "ready", "prep_cores": spare, "entries": len(runners)})
    try:
        go = json.loads(sys.stdin.readline() or "null")
    except ValueError:
        go = None
    if not isinstance(go, dict) or not go.get("go"):
        return None
    keep = set(go.get("keys") or runners)
    for k in [k for k in runners if k not in keep]:
        del runners[k]  # free the sessions this worker will not time
    pinned = cores if cores is not None and set_affinity(cores) else None
    return runners, errors, pinned, min(n, 1)


def measure(manifest, base_dir, prepared=None, pinned=None):
    """Warm up and time the manifest's entries on the ``pinned`` cores; ``prepared``: (runners, errors, warm-up
    rounds) of a held worker."""
    rt, method = manifest["runtime"], manifest.get("method", {})
    rng = np.random.RandomState(method.get("seed", 0))
    timer = time.perf_counter
    t_setup = timer()
    if prepared is None:
        runners, errors, warmed = load_runners(manifest, base_dir, _ALLOWED if pinned else None, pinned)
        warmup_n = max(0, method.get("warmup_n", 5) - warmed)  # their first call was made while loading
    else:
        runners, errors, warmup_n = prepared
    keys = list(runners)
    SPLIT["setup_s"] = timer() - t_setup

    gc.collect()
    gc.disable()  # a collection inside a timed call would be charged to whichever entry ran
    # Warm-up by count and by time: every entry runs warmup_n times, and rounds go on until warmup_s has passed.
    SPLIT["warmup_s"] = warm_up(runners, warmup_n, method.get("warmup_s", 1.0), timer)

    samples = dict((k, []) for k in keys)
    if method.get("rounds"):
        return measure_fixed(runners, samples, method, rng, timer), errors
    spent = dict((k, 0.0) for k in keys)
    next_check = dict((k, method.get("min_n", 20)) for k in keys)
    active = list(keys)
    target, budget, max_n = method.get("target_ci", 0.01), method.get("budget_s", 5.0), method.get("max_n", 5000)
    last_progress, r, done = timer(), 0, 0
    while active:
        r += 1
        for i in rng.permutation(len(active)):
            k = active[i]
            dt, cost = timed(runners[k], timer, method)
            samples[k].append(dt)
            spent[k] += cost
        finished = []
        for k in active:
            n = len(samples[k])
            out_of_budget = spent[k] >= budget or n >= max_n
            if n >= next_check[k] or out_of_budget:
                next_check[k] = int(n * 1.2) + 1
                med = float(np.median(samples[k]))
                ci = bootstrap_ci(samples[k], 300, r)  # a cheaper bootstrap to decide; the reported one is full
                if ci <= target * med or out_of_budget:
                    finished.append((k, ci <= target * med))
        for k, converged in finished:
            active.remove(k)
            emit(summarize(k, samples[k], method, converged))
            done += 1
            del runners[k]  # free the session
        if timer() - last_progress > 1.0:
            last_progress = timer()
            emit({"type": "progress", "round": r, "active": len(active), "done": done})
    gc.enable()
    return done, errors


def round_order(keys, method):
    """A function (rng, round) -> the order of that round's calls (indices into ``keys``): a fresh random
    permutation; or with ``method["phases"]`` = k >= 1, one kind of entry after the other (the key's prefix before
    ':', in order of first appearance), each kind in a fresh random order, and the first kind only every k-th round.
    ``validate`` times the networks' blocks that way in the networks' own workers: both read the host's speed of the
    same seconds, a block still follows blocks, and the blocks take fewer samples than the networks."""
    every = int(method.get("phases") or 0)
    if not every:
        return lambda rng, r=0: rng.permutation(len(keys)).tolist()
    groups = {}
    for i, k in enumerate(keys):
        groups.setdefault(k.split(":", 1)[0] if ":" in k else "", []).append(i)
    groups = list(groups.values())
    return lambda rng, r=0: [g[j] for g in (groups if r % every == 0 else groups[1:])
                             for j in rng.permutation(len(g)).tolist()]


def measure_fixed(runners, samples, method, rng, timer):
    """One worker of a multi-process measurement: a fixed number of rounds, then every entry at once.

    The host runs several such workers, one process after another, and pools their samples: a process's memory
    layout and the machine's state while it ran shift each entry's time by a few percent, and only new processes
    average that out (pyperf's reason for spawning many).
    """
    keys = list(runners)
    order = round_order(keys, method)
    last_progress = timer()
    # one plain call per sample (interleaved, a runner timed from here): the least Python between two calls, which
    # runs with caches the call has just filled (timed() took ~25 us a call that way, 0.3 s a worker; issue 18)
    plain = method.get("mode", "interleaved") != "steady" and not any(hasattr(r, "last") for r in runners.values())
    calls, lists = [runners[k] for k in keys], [samples[k] for k in keys]
    for r in range(int(method["rounds"])):
        if plain:
            for i in order(rng, r):
                call = calls[i]
                t = timer()
                call()
                lists[i].append(timer() - t)
        else:
            for i in order(rng, r):
                samples[keys[i]].append(timed(runners[keys[i]], timer, method)[0])
        if timer() - last_progress > 1.0:
            last_progress = timer()
            emit({"type": "progress", "round": r + 1, "active": len(keys), "done": 0})
    if plain:
        spent = sum(sum(x) for x in lists)
        SPLIT["timed_s"] += spent
        SPLIT["kept_s"] += spent
    gc.enable()
    # the worker's own CI from order statistics: the host pools every worker's samples for the CI it keeps, and a
    # 1000-resample bootstrap per entry here cost 0.6 s a worker, 10 % of a profile's wall time (issue 18)
    quick = dict(method, bootstrap=0)
    for k in keys:
        line = summarize(k, samples[k], quick, True)
        line["worker"] = method.get("worker", 0)
        emit(line)
    return len(keys)


def main(argv):
    t_main = time.perf_counter()
    if len(argv) >= 1 and argv[0] == "--check":
        name = argv[1] if len(argv) > 1 else "onnxruntime"
        rt = {"name": name, "benchmark_model": argv[2] if len(argv) > 2 else None}
        emit(fingerprint(name, None, rt))
        mod, _ = runtime_info(name)
        binary = uses_binary(rt)
        emit({"type": "check", "runtime": name, "ok": binary_info(rt) is not None if binary else mod is not None,
              "packages": RUNTIME_PACKAGES.get(name, [name]), "python_executable": sys.executable,
              "benchmark_model": rt["benchmark_model"] if binary else None})
        return 0
    if len(argv) != 1:
        sys.stderr.write("usage: lutnas_agent.py MANIFEST.json | --check [RUNTIME]\n")
        return 2
    try:
        with open(argv[0]) as f:
            manifest = json.load(f)
        rt = manifest["runtime"]
        name = rt["name"]
    except (OSError, ValueError, KeyError) as exc:
        emit({"type": "error", "code": "bad_manifest", "message": "%s: %s" % (argv[0], exc)})
        return 2
    mod, _ = runtime_info(name)
    if uses_binary(rt):
        if binary_info(rt) is None:
            emit({"type": "error", "code": "binary_missing", "message": "benchmark_model binary %r is not an "
                  "executable file on this device" % rt.get("benchmark_model")})
            sys.stderr.write("benchmark_model binary %r is not an executable file on this device; set "
                             "benchmark_model = PATH in the inventory\n" % rt.get("benchmark_model"))
            return 3
    elif mod is None:
        emit({"type": "error", "code": "runtime_missing", "package": RUNTIME_PACKAGES.get(name, [name])[0],
              "message": "no package for runtime %r is importable by %s" % (name, sys.executable)})
        return 3
    base = os.path.dirname(os.path.abspath(argv[0]))
    prepared = None
    if manifest.get("hold"):
        held = hold(manifest, base, int(rt.get("threads", 1)))
        if held is None:
            return 0  # the host did not need this worker after all
        runners, errors, pinned, warmup_n = held
        prepared = (runners, errors, warmup_n)
    else:
        pinned = pin_cores(int(rt.get("threads", 1)), manifest.get("method", {}).get("pin", "auto"))
    emit(fingerprint(name, pinned, rt))
    t0 = time.time()
    done, errors = measure(manifest, base, prepared, pinned)
    split = dict((k, round(v, 3)) for k, v in SPLIT.items())
    split["imports_s"] = round(t_main - _T_START, 3)
    emit({"type": "done", "entries": done, "errors": errors, "wall_s": round(time.time() - t0, 3), "split": split,
          "affinity": process_affinity(),
          "temperatures_c": temperatures(), "freq_mhz": frequencies()})
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: freeing every session one by one took 0.15 s a worker (issue 18)
