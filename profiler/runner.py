"""The host side of profiling: choose entries, export them, run the agent through a transport, journal every line
as it arrives, resume from the journal, and write the LUT atomically."""
from __future__ import annotations

import os
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .ahead import Ahead
from .devices import RUNTIMES, Device
from .errors import DeviceFailed, NotWritable, RuntimeMissing
from .journal import Journal, journal_path
from .journal import job_id as journal_job_id
from .keys import pair_key
from .nb201 import CellArch, Piece
from .lut import Lut, lut_dir, lut_filename
from .method import Method
from .progress import Progress
from .resume import run_record, usable_by_worker
from .space import Arch, BlockSpec, Space
from .transport import AgentExit, LocalTransport


def boundary_pairs(space: Space, per_boundary: int, seed: int = 0) -> List[Tuple[BlockSpec, BlockSpec]]:
    """Adjacent block pairs, ``per_boundary`` of each boundary shape of the space, drawn reproducibly.

    Half hand a tensor from a stage's first block to its second, half from a later block to the next stage (or
    the head), so both kinds of producer and consumer are represented.
    """
    rng = np.random.default_rng(seed)
    cfgs = space.configs
    stem, ds, head = space.fixed_blocks()

    def pick(stage: int, slot: int) -> BlockSpec:
        return space.block(stage, slot, cfgs[int(rng.integers(len(cfgs)))])

    pairs = [(stem, ds)]
    pairs += [(ds, pick(0, 0)) for _ in range(per_boundary)]
    for s in range(space.n_stages):
        for j in range(per_boundary):
            if j % 2 == 0:
                pairs.append((pick(s, 0), pick(s, 1)))
            else:
                pairs.append((pick(s, 1), pick(s + 1, 0) if s + 1 < space.n_stages else head))
    # the same pair may be drawn twice; measure it once
    return list(dict.fromkeys(pairs))


def job_entries(space: Space, method: Method) -> List[Tuple[str, BlockSpec, Optional[BlockSpec]]]:
    """(key, block, second block of a pair or None) for everything a full LUT measures."""
    own = getattr(space, "profile_entries", None)
    if own is not None:  # a cell space lists its own pieces (profiler/nb201.py)
        return own()
    out = [(str(b), b, None) for b in space.unique_blocks()]
    out += [(pair_key(a, b), a, b) for a, b in boundary_pairs(space, method.pairs, method.seed)]
    return out


def job_id(device: Device, space: Space, runtime: dict, batch: int, method: Method, keys: Sequence[str]) -> str:
    return journal_job_id(device.name, space.hash, runtime, batch, asdict(method), sorted(keys))


def validate_method(method: "Method", args) -> "Method":
    """A LUT's measuring method as ``validate`` uses it: its --budget, and --processes/--rounds where given (fewer
    workers than the LUT's, and no top-ups: a quicker, rougher check)."""
    method = replace(method, budget_s=args.budget)
    if getattr(args, "processes", None):
        method = replace(method, processes=args.processes, max_processes=args.processes)
    if getattr(args, "rounds", None):
        method = replace(method, rounds=args.rounds)
    return method


def export_entry(first, second: Optional[BlockSpec], batch: int, fmt: str) -> Tuple[Path, bool]:
    """Export an entry: a block, a pair of blocks (``second`` given) or a whole network (an ``Arch``)."""
    from .export import cached, export_arch, export_block

    def build():  # torch is imported only when the cache lacks the model (issue 18: seconds per run otherwise)
        from .nets import build_chain

        return build_chain([first, second])

    if isinstance(first, Arch):
        return export_arch(first, batch, fmt)
    if isinstance(first, (CellArch, Piece)):  # NB201 networks and pieces (profiler/nb201.py)
        from .nb201_torch import build_module

        return cached(getattr(first, "key", str(first)), first.input_shape(batch), lambda: build_module(first), fmt)
    if second is None:
        return export_block(first, batch, fmt)
    return cached(pair_key(first, second), first.input_shape(batch), build, fmt)


def entry_shape(first, batch: int) -> List[int]:
    if isinstance(first, Arch):
        return [batch, 3, first.space.resolution, first.space.resolution]
    return list(first.input_shape(batch))


def check_writable(d: Path) -> None:
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = d / f".write-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise NotWritable(f"output directory {d} is not writable ({exc.strerror}); pass --out DIR") from None


def model_format(runtime: str) -> str:
    return "tflite" if runtime in ("tflite", "benchmark_model") else "onnx"


_POOLED: Dict[tuple, dict] = {}  # issue 18: pooling (a 1000-resample bootstrap) is done once per set of workers


def pooled(key: str, lines: Dict[int, dict], method: Method) -> dict:
    """One entry from the samples of all its workers, with the per-worker medians kept for inspection.

    Memoised: the top-up loop asks for every entry's pooled CI after each worker, and recomputing the bootstraps of
    all 159 entries each time was most of a profile's host-side time (docs/BENCHMARKS.md, issue 18)."""
    import copy

    w = sorted(lines)
    memo = (key, method, tuple((i, lines[i]["n"], lines[i]["median_ms"], lines[i]["ci95_ms"]) for i in w))
    if memo not in _POOLED:
        if len(_POOLED) > 20000:
            _POOLED.clear()
        _POOLED[memo] = _pool(key, [lines[i]["samples_ms"] for i in w], [lines[i]["median_ms"] for i in w], method)
    return copy.deepcopy(_POOLED[memo])


def worth_a_worker(entry: dict, workers: int, method: Method) -> bool:
    """Whether one more worker is worth running for an entry above its CI target: only if the workers it would take
    to reach the target, at the rate a CI shrinks with samples (1/sqrt(n)), fit under ``max_processes``. An entry far
    above the target on a noisy device stays flagged ``ci_not_reached`` instead of running the profile to its cap:
    on the 2-core VM here 105 of 159 entries were still above 1 % after 40 workers, which doubled the profile's
    wall time for CIs of 1.09 % instead of 1.2 % (docs/BENCHMARKS.md, issue 18)."""
    if "ci_not_reached" not in entry["flags"]:
        return False
    ratio = entry["ci95_ms"] / max(method.target_ci * entry["median_ms"], 1e-12)
    return workers * ratio * ratio <= method.max_processes


def pool_parts(key: str, parts: Sequence[dict], method: Method) -> dict:
    """One entry from the same key measured in several passes (pooled entries of ``measure``), samples pooled."""
    out = _pool(key, [p["samples_ms"] for p in parts],
                [m for p in parts for m in p.get("worker_medians_ms", [p["median_ms"]])], method)
    out["pass_medians_ms"] = [p["median_ms"] for p in parts]
    return out


def _pool(key: str, samples_ms: Sequence[Sequence[float]], worker_medians: List[float], method: Method) -> dict:
    from agents.lutnas_agent import summarize

    # the pooled CI from order statistics: the same width as a bootstrap over these thousands of samples (within a
    # few %), at 1/8000 of the cost; the bootstraps were most of a profile's host-side time (docs/BENCHMARKS.md)
    out = summarize(key, [v / 1e3 for part in samples_ms for v in part], dict(asdict(method), bootstrap=0), True)
    if out["ci95_ms"] > method.target_ci * out["median_ms"]:
        out["flags"].append("ci_not_reached")
    out["workers"] = len(worker_medians)
    out["worker_medians_ms"] = list(worker_medians)
    return out


def lut_warning(lut: Lut) -> None:
    """One warning line when the new LUT fails the checks its users apply (a boundary correction larger than a
    block, from noisy pair measurements): the measurements are kept, but search and validate will refuse it."""
    from .errors import BadLut

    try:
        lut.latency_model()
    except BadLut as exc:
        import sys

        print(f"warning: {exc} (the device was probably busy)", file=sys.stderr, flush=True)


def busy_warning(device: str, fingerprint: dict) -> bool:
    """Print one warning line when the device's 1-minute load average shows every core already busy.

    Other processes on the device inflate every timing (on the 2-core VM here, three competing jobs made whole
    networks measure 4x slower than their blocks had). The load average is recorded with the fingerprint either
    way; returns whether a warning was printed.
    """
    load, cores = fingerprint.get("loadavg"), fingerprint.get("cpu_count")
    if not load or not cores or load[0] < cores:
        return False
    import sys

    print(f"warning: device {device!r} is busy (load average {load[0]:.2f} on {cores} cores): timings will be "
          "inflated; stop other jobs on it and re-run", file=sys.stderr, flush=True)
    return True


def worker_manifest(journal: Journal, runtime: dict, method: Method, spec: dict, worker: int, keys) -> dict:
    m = dict(asdict(method), worker=worker, seed=method.seed + worker)
    if method.processes <= 1:
        del m["rounds"]  # one process: the agent's adaptive stopping rule decides the sample count
    return {"job": journal.path.stem, "runtime": runtime, "method": m, "entries": [spec[k] for k in keys]}


def run_job(device: Device, transport_factory: Callable, runtime: dict, batch: int, method: Method,
            entries: List[Tuple[str, object, Optional[BlockSpec]]], journal: Journal, progress: Progress) -> Dict[str, float]:
    """Export ``entries``, run the agent's workers on what the journal lacks, journal every line as it arrives.

    With ``method.processes > 1`` each worker is a fresh agent process timing every unfinished entry for a fixed
    number of rounds; entries whose pooled CI is still above target get more workers, up to ``max_processes``.
    Returns wall seconds by phase.
    """
    fmt = model_format(runtime["name"])
    t0 = time.monotonic()
    spec = {}
    for key, a, b in entries:
        try:
            path, _ = export_entry(a, b, batch, fmt)
        except ImportError as exc:
            raise RuntimeMissing(f"converting blocks to {fmt} needs a package that is missing ({exc.name}); "
                                 "install it with: pip install 'lutnas[tflite]' torch==2.13.0") from None
        spec[key] = {"key": key, "model": str(path), "shape": entry_shape(a, batch)}
    timing = {"export_s": time.monotonic() - t0, "measure_s": 0.0, "overhead_s": 0.0}
    split = timing["split"] = {"journal_s": 0.0, "pool_s": 0.0, "start_s": 0.0, "processes": 0}  # issue 18
    adaptive = method.processes <= 1
    need = 1 if adaptive else method.processes
    total_units = len(entries) * need
    t1 = time.monotonic()
    warned, note = False, ""
    with transport_factory() as transport:
        ahead = (Ahead(transport, lambda w, keys: worker_manifest(journal, runtime, method, spec, w, keys), list(spec),
                       method) if not adaptive and method.prepare_ahead and hasattr(transport, "prepare") else None)
        while True:
            have = usable_by_worker(journal.lines, list(spec), need)  # partial workers set aside
            units = sum(min(len(have.get(k, {})), need) for k in spec)
            progress.update(units * progress.total // max(total_units, 1), note)
            gaps = [(w, k) for w in range(need) for k in spec if w not in have.get(k, {})]
            todo = [k for k in spec if len(have.get(k, {})) < need]
            if not todo and not adaptive and need < method.max_processes:
                # entries whose pooled CI is still too wide get one more worker each round of this loop
                tp = time.monotonic()
                todo = [k for k in spec if len(have[k]) < method.max_processes
                        and worth_a_worker(pooled(k, have[k], method), len(have[k]), method)]
                split["pool_s"] += time.monotonic() - tp
                note = f"{len(todo)} entries above the CI target: one more worker each" if todo else ""
            if not todo:
                break
            if gaps:  # the first worker index some entry lacks, over every entry that lacks it: timed together
                worker = gaps[0][0]
                todo = [k for w, k in gaps if w == worker]
            else:
                worker = min(len(have.get(k, {})) for k in todo)
                todo = [k for k in todo if len(have.get(k, {})) == worker]
            manifest = worker_manifest(journal, runtime, method, spec, worker, todo)
            if not adaptive:
                journal.append(run_record(worker, todo))  # what this worker times together, to tell it partial
            try:
                t_start, split["processes"] = time.monotonic(), split["processes"] + 1
                if ahead:  # this worker, prepared while the one before measured, and the next one prepared now
                    lines, held = ahead.start(worker, todo, manifest, have, need)
                    split["held"] = split.get("held", 0) + held
                else:
                    lines = transport.run(manifest)
                for msg in lines:
                    kind = msg.get("type")
                    if kind == "fingerprint":  # the process is up: start, interpreter, imports, pinning
                        split["start_s"] += time.monotonic() - t_start
                    if kind == "error" and msg.get("code") == "runtime_missing":
                        raise RuntimeMissing(
                            f"device {device.name!r}: runtime package {msg['package']!r} is not installed "
                            f"({msg['message']}); install it with: {device.python} -m pip install "
                            f"{RUNTIMES.get(runtime['name'], msg['package'])}")
                    if kind == "fingerprint" and not warned:
                        warned = busy_warning(device.name, msg)
                    if kind in ("fingerprint", "entry", "error", "done"):
                        tj = time.monotonic()
                        journal.append(msg)
                        split["journal_s"] += time.monotonic() - tj
                    if kind == "done":
                        timing["measure_s"] += msg.get("wall_s", 0.0)
                        for k, v in msg.get("split", {}).items():  # the agent's own: setup, warm-up, timed calls
                            split[k] = split.get(k, 0.0) + v
                    if kind == "entry":
                        units += 1
                        progress.update(units * progress.total // max(total_units, 1), note)
                    if kind == "error" and "key" in msg:
                        return dict(timing, overhead_s=time.monotonic() - t1 - timing["measure_s"])
            except AgentExit as exc:
                raise DeviceFailed(f"device {device.name!r}: {exc}") from None
            if adaptive:
                break
    timing["overhead_s"] = time.monotonic() - t1 - timing["measure_s"]
    return timing


def measure(device: Device, runtime: dict, batch: int, method: Method, entries: list, journal_path: Path,
            transport_factory: Optional[Callable] = None, progress: bool = True, require_resume: bool = False,
            label: str = "profile") -> Tuple[Dict[str, dict], Journal, Dict[str, float]]:
    """Measure ``entries`` (key, first, second) on ``device``, journaled at ``journal_path`` and resumed from it.

    Returns the finished entries by key, the journal (closed; the caller removes it once the results are safe
    elsewhere) and the wall time split into export, measurement and overhead.
    """
    from .errors import BadInput

    keys = [k for k, _, _ in entries]
    check_writable(journal_path.parent)
    if require_resume and not journal_path.exists():
        raise BadInput(f"--resume: no journal for this job in {journal_path.parent} (expected {journal_path.name}); "
                       "run without --resume")
    journal = Journal(journal_path)
    bar = Progress(len(keys), f"{label} {device.name}", enabled=progress)
    timing = {"export_s": 0.0, "measure_s": 0.0, "overhead_s": 0.0}
    try:
        timing = run_job(device, transport_factory or LocalTransport, runtime, batch, method, entries, journal, bar)
        need = 1 if method.processes <= 1 else method.processes
        have = usable_by_worker(journal.lines, keys, need)
        missing = [k for k in keys if len(have.get(k, {})) < need]
        if missing:
            errs = [o for o in journal.lines if o["type"] == "error"]
            why = f" (first error: {errs[-1].get('key')}: {errs[-1].get('message')})" if errs else ""
            raise DeviceFailed(f"device {device.name!r}: {len(missing)} entries not measured{why}; rerun to resume "
                               f"from {journal_path}")
        tp = time.monotonic()
        done = {k: (have[k][0] if need == 1 else pooled(k, have[k], method)) for k in keys}
        if "split" in timing:
            timing["split"]["pool_s"] += time.monotonic() - tp
    finally:
        bar.close()
        journal.close()
    return {k: done[k] for k in keys}, journal, timing


def profile(device: Device, space: Space, runtime: dict, batch: int = 1, method: Method = Method(),
            out: Path = Path("luts"), transport_factory: Optional[Callable] = None, progress: bool = True,
            require_resume: bool = False, entries: Optional[list] = None) -> Tuple[Path, Dict[str, float]]:
    """Profile every entry of ``space`` on ``device``; returns the LUT path and the wall time split."""
    t_start = time.monotonic()
    entries = entries if entries is not None else job_entries(space, method)
    d = lut_dir(out, device.name, space)
    jid = job_id(device, space, runtime, batch, method, [k for k, _, _ in entries])
    done, journal, timing = measure(device, runtime, batch, method, entries, journal_path(d, jid),
                                    transport_factory, progress, require_resume)
    fp = journal.fingerprint()
    rt = dict(runtime, version=fp.get("runtime"))
    lut = Lut.new(space, device.name, fp, rt, batch, asdict(method), done)
    full = job_entries(space, method)
    if {k for k, _, _ in full} - set(done):  # --limit/--blocks: say so in the LUT, so it is never taken as whole
        blocks = {k for k, _, second in full if second is None}
        lut.data["partial"] = {"entries": len(done), "of": len(full), "blocks_missing": len(blocks - set(done))}
    path = lut.save(d / lut_filename(runtime, batch))
    journal.remove()  # everything it held is now in the LUT
    lut_warning(lut)
    timing["total_s"] = time.monotonic() - t_start
    timing["overhead_s"] = timing["total_s"] - timing["export_s"] - timing["measure_s"]
    return path, timing
