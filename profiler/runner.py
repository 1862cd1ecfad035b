"""The host side of profiling: choose entries, export them, run the agent through a transport, journal every line
as it arrives, resume from the journal, and write the LUT atomically."""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .devices import RUNTIMES, Device
from .errors import DeviceFailed, NotWritable, RuntimeMissing
from .journal import Journal
from .lut import Lut, boundary_key, lut_dir, lut_filename
from .progress import Progress
from .space import Arch, BlockSpec, Space
from .transport import AgentExit, LocalTransport


@dataclass(frozen=True)
class Method:
    """How the agent measures: warm-up, then interleaved rounds until each entry's CI is tight enough."""

    warmup_n: int = 5  # warm-up rounds, at least
    warmup_s: float = 1.0  # seconds of warm-up rounds, at least
    min_n: int = 30  # samples before the first stopping check
    target_ci: float = 0.01  # stop when the 95 % CI half-width of the median <= this fraction of it
    budget_s: float = 4.0  # seconds of timed calls per entry before giving up on the CI target
    max_n: int = 5000
    bootstrap: int = 1000  # bootstrap resamples for the reported CI
    seed: int = 0
    pin: str = "auto"  # cores to pin to: auto (the last ones), none, or a list like "2,3"
    pairs: int = 6  # block pairs measured per boundary shape (for the in-context correction)


def pair_key(a: BlockSpec, b: BlockSpec) -> str:
    return f"pair:{a}+{b}"


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
    out = [(str(b), b, None) for b in space.unique_blocks()]
    out += [(pair_key(a, b), a, b) for a, b in boundary_pairs(space, method.pairs, method.seed)]
    return out


def job_id(device: Device, space: Space, runtime: dict, batch: int, method: Method, keys: Sequence[str]) -> str:
    blob = json.dumps([device.name, space.hash, runtime, batch, asdict(method), sorted(keys)], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def export_entry(first, second: Optional[BlockSpec], batch: int, fmt: str) -> Tuple[Path, bool]:
    """Export an entry: a block, a pair of blocks (``second`` given) or a whole network (an ``Arch``)."""
    from .export import cached, export_arch, export_block
    from .nets import build_chain

    if isinstance(first, Arch):
        return export_arch(first, batch, fmt)
    if second is None:
        return export_block(first, batch, fmt)
    return cached(pair_key(first, second), first.input_shape(batch), lambda: build_chain([first, second]), fmt)


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
    return "tflite" if runtime == "tflite" else "onnx"


def run_job(device: Device, transport_factory: Callable, runtime: dict, batch: int, method: Method,
            todo: List[Tuple[str, BlockSpec, Optional[BlockSpec]]], journal: Journal, progress: Progress,
            done_before: int) -> Dict[str, float]:
    """Export ``todo``, run the agent on it and journal every line. Returns wall seconds by phase."""
    fmt = model_format(runtime["name"])
    t0 = time.monotonic()
    models, entries = [], []
    for key, a, b in todo:
        try:
            path, _ = export_entry(a, b, batch, fmt)
        except ImportError as exc:
            raise RuntimeMissing(f"converting blocks to {fmt} needs a package that is missing ({exc.name}); "
                                 "install it with: pip install 'lutnas[tflite]' torch==2.13.0") from None
        models.append(path)
        entries.append({"key": key, "model": str(path), "shape": entry_shape(a, batch)})
    t_export = time.monotonic() - t0
    manifest = {"job": journal.path.stem, "runtime": runtime, "method": asdict(method), "entries": entries}
    t1 = time.monotonic()
    agent_wall = 0.0
    with transport_factory() as transport:
        try:
            for msg in transport.run(manifest, models):
                kind = msg.get("type")
                if kind == "error" and msg.get("code") == "runtime_missing":
                    raise RuntimeMissing(f"device {device.name!r}: runtime package {msg['package']!r} is not "
                                         f"installed ({msg['message']}); install it with: "
                                         f"{device.python} -m pip install {RUNTIMES.get(runtime['name'], msg['package'])}")
                if kind in ("fingerprint", "entry", "error", "done"):
                    journal.append(msg)
                if kind == "done":
                    agent_wall = msg.get("wall_s", 0.0)
                if kind in ("entry", "progress"):
                    progress.update(done_before + len([1 for k, _, _ in todo if k in journal.entries()]))
        except AgentExit as exc:
            raise DeviceFailed(f"device {device.name!r}: {exc}") from None
    wall = time.monotonic() - t1
    return {"export_s": t_export, "measure_s": agent_wall, "overhead_s": wall - agent_wall}


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
        done = journal.entries()
        todo = [e for e in entries if e[0] not in done]
        bar.update(len(keys) - len(todo))
        if todo:
            timing = run_job(device, transport_factory or LocalTransport, runtime, batch, method, todo, journal, bar,
                             len(keys) - len(todo))
        done = journal.entries()
        missing = [k for k in keys if k not in done]
        if missing:
            errs = [o for o in journal.lines if o["type"] == "error"]
            why = f" (first error: {errs[-1].get('key')}: {errs[-1].get('message')})" if errs else ""
            raise DeviceFailed(f"device {device.name!r}: {len(missing)} entries not measured{why}; rerun to resume "
                               f"from {journal_path}")
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
    done, journal, timing = measure(device, runtime, batch, method, entries, d / f".journal-{jid}.jsonl",
                                    transport_factory, progress, require_resume)
    fp = journal.fingerprint()
    rt = dict(runtime, version=fp.get("runtime"))
    lut = Lut.new(space, device.name, fp, rt, batch, asdict(method), done)
    path = lut.save(d / lut_filename(runtime, batch))
    journal.remove()  # everything it held is now in the LUT
    timing["total_s"] = time.monotonic() - t_start
    timing["overhead_s"] = timing["total_s"] - timing["export_s"] - timing["measure_s"]
    return path, timing
