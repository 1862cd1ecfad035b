"""Console scripts ``profile`` and ``validate``: the one place that turns errors into a line and an exit code."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional

from .checks import OneLineParser, check_distinct_devices, float_range, int_range
from .errors import ExitStatus, LutnasError


INTERRUPTED = "what was measured is in the journal, rerun to resume"


def raw_main(prog: str, parser: argparse.ArgumentParser, run: Callable, argv: Optional[List[str]],
             interrupted: str = INTERRUPTED) -> int:
    """Parse, run, and map every error to one line on stderr and its exit code (httpie's raw_main).

    Typed errors get their own code; anything else is a bug: exit 1 with advice to rerun with --traceback.
    """
    args = parser.parse_args(argv)
    try:
        return int(run(args) or 0)
    except LutnasError as exc:
        if getattr(args, "traceback", False):
            raise
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return int(exc.status)
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted; {interrupted}", file=sys.stderr)
        return int(ExitStatus.INTERRUPTED)
    except Exception as exc:  # a bug: one line, and the way to see the traceback to report it
        if getattr(args, "traceback", False):
            raise
        msg = " ".join(str(exc).split())[:300]
        print(f"{prog}: internal error: {type(exc).__name__}: {msg}; rerun with --traceback and report it",
              file=sys.stderr)
        return int(ExitStatus.ERROR)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", action="append", metavar="NAME",
                   help="device to run on: 'local' (built in) or a name from the inventory; repeat for several")
    p.add_argument("--devices", metavar="FILE", help="device inventory (TOML); default: $LUTNAS_DEVICES, "
                   "./devices.toml, ~/.config/lutnas/devices.toml")
    p.add_argument("--runtime", help="onnxruntime or tflite (default: the device preset's)")
    p.add_argument("--threads", type=int_range(1), help="runtime intra-op threads (default: the preset's)")
    p.add_argument("--batch", type=int_range(1), help="batch size (default: the preset's)")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")


def profile_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="profile", description="Measure every unique block of the search space on a "
                                "device and write a versioned latency table (LUT). The last line printed is its path.")
    _common(p)
    p.add_argument("--out", default="luts", metavar="DIR", help="LUT root directory (default: luts)")
    p.add_argument("--resume", action="store_true", help="require a journal of this job to resume from (a journal "
                   "is resumed automatically whenever one exists)")
    p.add_argument("--target-ci", type=float_range(0, 1, hi_open=True), default=0.01, help="stop an entry when its median's 95%% CI "
                   "half-width is at most this fraction (default 0.01)")
    p.add_argument("--budget", type=float_range(0), default=4.0, metavar="S", help="seconds of timed calls per entry "
                   "before giving up on the CI target (default 4)")
    p.add_argument("--mode", choices=("steady", "interleaved"), default="interleaved", help="interleaved "
                   "(default): one call per entry per round, caches holding another model; steady: warm bursts of "
                   "consecutive calls of one entry, first calls dropped (networks read the same both ways within 2 %% "
                   "here, interleaved more repeatably: docs/latency-model.md)")
    p.add_argument("--processes", type=int_range(1), metavar="P", help="worker processes whose samples are "
                   "pooled, to average out per-process effects (default 10 interleaved, 3 steady; 1 = one adaptive "
                   "process)")
    p.add_argument("--rounds", type=int_range(1), help="rounds each worker times (default 80 interleaved, 30 steady)")
    p.add_argument("--prepare-ahead", action="store_true", help="start each worker on the other cores while the "
                   "one before measures (local devices with a spare core): faster, but the measuring worker reads a "
                   "few %% slow meanwhile on a VM with shared caches; check yours with benchmarks/bench_ahead.py")
    p.add_argument("--space", default="hardcore-mbv3", help="search space (default hardcore-mbv3)")
    p.add_argument("--blocks", metavar="PATTERN", help="measure only the entries whose key matches this glob "
                   "(blocks like 'ir_k3_*@7', pairs 'pair:*'); the LUT is marked partial")
    p.add_argument("--limit", type=int, metavar="N", help="measure only the first N entries (of those --blocks "
                   "selects); the LUT is marked partial, and validate/search refuse one that lacks blocks")
    p.add_argument("--check", action="store_true", help="only connect and report the device's Python, numpy, "
                   "runtime and accelerator")
    p.add_argument("--trust-new-host", action="store_true", help="accept and record an unknown SSH host key")
    return p


def select_entries(space, method, pattern: Optional[str], limit: Optional[int]) -> Optional[list]:
    """The entries ``--blocks PATTERN`` and ``--limit N`` keep, in the space's order; None when neither is given."""
    from fnmatch import fnmatchcase

    from .errors import BadInput
    from .runner import job_entries

    if pattern is None and limit is None:
        return None
    entries = job_entries(space, method)
    if pattern is not None:
        entries = [e for e in entries if fnmatchcase(e[0], pattern)]
        if not entries:
            raise BadInput(f"--blocks {pattern!r} matches no entry of space {space.name!r}; keys look like "
                           f"{job_entries(space, method)[1][0]!r} (shell-style wildcards)")
    if limit is not None:
        if limit < 1:
            raise BadInput(f"--limit {limit}: give a number of entries >= 1")
        entries = entries[:limit]
    return entries


def run_profile(args) -> int:
    from dataclasses import replace

    from .devices import with_overrides
    from .inventory import resolve_device
    from .runner import Method, profile
    from .space import get_space

    names = args.device or ["local"]
    check_distinct_devices(names)
    space = get_space(args.space)  # UnknownSpace: one line, exit 14
    devices = [with_overrides(resolve_device(n, args.devices), batch=args.batch) for n in names]
    base = Method.preset(args.mode)
    processes = args.processes if args.processes is not None else base.processes
    method = replace(base, target_ci=args.target_ci, budget_s=args.budget, processes=processes,
                     rounds=args.rounds if args.rounds is not None else base.rounds,
                     max_processes=max(2 * processes, 1), prepare_ahead=args.prepare_ahead)
    entries = None if args.check else select_entries(space, method, args.blocks, args.limit)
    if len(devices) > 1 or not devices[0].is_local:
        from .fleet import profile_fleet  # SSH devices

        return profile_fleet(devices, space, args, method, entries=entries)
    dev = devices[0]
    runtime = dev.runtime_settings(args.runtime, args.threads)
    if args.check:
        from .check import check_local

        return check_local(dev, runtime)
    path, timing = profile(dev, space, runtime, dev.preset.batch, method, Path(args.out), progress=not args.quiet,
                           require_resume=args.resume, entries=entries)
    print(f"profiled {dev.name}: export {timing['export_s']:.1f}s, measurement {timing['measure_s']:.1f}s, "
          f"overhead {timing['overhead_s']:.1f}s, total {timing['total_s']:.1f}s", file=sys.stderr)
    sp = timing.get("split")
    if sp and sp.get("processes"):  # issue 18: where the wall time went
        print(f"  inside timed calls {sp.get('timed_s', 0):.1f}s ({100 * sp.get('timed_s', 0) / timing['total_s']:.0f}"
              f" % of wall; kept samples {sp.get('kept_s', 0):.1f}s); {sp['processes']} processes: start "
              f"{sp['start_s']:.1f}s (imports {sp.get('imports_s', 0):.1f}s), sessions {sp.get('setup_s', 0):.1f}s, "
              f"warm-up {sp.get('warmup_s', 0):.1f}s; host: journal {sp['journal_s']:.1f}s, pooling "
              f"{sp['pool_s']:.1f}s", file=sys.stderr)
        if sp.get("held"):
            print(f"  {sp['held']} processes prepared while another measured: sessions {sp.get('prep_s', 0):.1f}s "
                  f"and warm-up {sp.get('prep_warmup_s', 0):.1f}s on the other cores", file=sys.stderr)
    print(path)
    return 0


def profile_main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "import":  # a table fitted from whole-network measurements (profiler/fit.py)
        from .fit import import_parser, run_import

        return raw_main("profile import", import_parser(), run_import, argv[1:])
    return raw_main("profile", profile_parser(), run_profile, argv)


def validate_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="validate", description="Measure random whole networks end to end on a device "
                                "and compare them with the LUT's prediction LAT = alpha^T Theta beta.")
    _common(p)
    p.add_argument("--lut", metavar="PATH", help="LUT to validate (default: the newest for the device and --space); "
                   "its own space is used")
    p.add_argument("--space", default="hardcore-mbv3", help="search space whose newest LUT to validate when --lut is "
                   "not given (default hardcore-mbv3)")
    p.add_argument("--out", default="luts", metavar="DIR", help="LUT root, to find the newest LUT and store a "
                   "calibrated version (default: luts)")
    p.add_argument("--n", type=int_range(4), default=50, help="random networks to measure (default 50)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="REPORT", help="write the report as JSON")
    p.add_argument("--plot", metavar="PNG", help="write a predicted-vs-measured scatter")
    p.add_argument("--calibrate", action="store_true", help="fit measured = a*predicted + b on half the networks "
                   "and, if it improves the other half, store it with the LUT as a new version")
    p.add_argument("--budget", type=float_range(0), default=4.0, metavar="S", help="seconds of timed calls per network")
    p.add_argument("--processes", type=int_range(2), metavar="P", help="worker processes per network (default: the "
                   "LUT's own, e.g. 20; fewer is quicker and noisier)")
    p.add_argument("--rounds", type=int_range(1), metavar="N", help="rounds each worker times (default: the LUT's own)")
    p.add_argument("--anchors", type=int_range(0), default=8, metavar="N", help="LUT blocks re-measured in their own pass "
                   "before the networks, to tell a changed device from a wrong model (default 8; 0: none)")
    p.add_argument("--cycles", type=int_range(0), default=0, metavar="N", help="also re-measure all the LUT's entries, in N "
                   "passes alternating with N passes of the networks (each with 1/N of the workers), and report the "
                   "prediction from that same-run table: the latency model's error with the device's state held "
                   "fixed, apart from how far the device moved since profiling (default 0: off)")
    p.add_argument("--same-run", type=int_range(0), default=2, metavar="N", help="re-measure the LUT entries the sampled "
                   "networks use (their blocks, and the boundary pairs) in the networks' own workers, each round the "
                   "blocks then the networks, in N passes, and report the prediction from that same-run table beside "
                   "the stored LUT's: model error apart from device drift (default 2; 0: off, the stored LUT's "
                   "prediction only; --cycles re-measures the whole table in passes of its own instead)")
    p.add_argument("--drift", action="store_true", help="only re-measure the anchor blocks and print the device's "
                   "speed relative to the LUT (warns when off by more than 5 %%)")
    return p


def validate_main(argv: Optional[List[str]] = None) -> int:
    from .validate import run_validate

    return raw_main("validate", validate_parser(), run_validate, argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(profile_main())
