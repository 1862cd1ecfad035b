"""Validation at the edge: every input is checked where it enters, with one line naming the file, key or option.

- LUT files (``check_lut_data``): the schema's types, finite positive latencies, a known space; and, on the table the
  latency model uses (``check_block_table``), boundary deltas smaller than the blocks they correct and a
  calibration that keeps every prediction positive.
- Numeric command-line options (``int_range``, ``float_range``): argparse ``type=`` functions, so a bad value is a
  usage error (exit 2) naming the option.
- Resource quantities (``parse_quantity``): the unit must match the resource (ms for latency; k/K/M/G or none for
  params and FLOPs).
- Output paths (``check_output_file``, ``check_output_dir``): checked before any work, so results are never lost to an
  unwritable ``--json`` or ``--export`` after a long run.
- ``OneLineParser``: argparse's usage errors in one line (``prog: error: ... (see --help)``), exit 2.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from pathlib import Path
from typing import Callable, Dict, Optional

from .errors import BadInput, BadLut, ExitStatus, NotWritable


class OneLineParser(argparse.ArgumentParser):
    """argparse with its error as one line on stderr (the usage is in ``--help``), exit status 2."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(int(ExitStatus.USAGE))


# --- numeric options ---------------------------------------------------------------------------------------------
def _number(text: str, kind: Callable, what: str):
    try:
        v = kind(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(v, float) and not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def int_range(lo: Optional[int] = None, hi: Optional[int] = None) -> Callable[[str], int]:
    """argparse type: an integer in [lo, hi] (either bound may be None)."""
    def parse(text: str) -> int:
        v = _number(text, int, "an integer")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"{v} is out of range; give {_bounds(lo, hi)}")
        return v

    parse.__name__ = "integer"
    return parse


def float_range(lo: Optional[float] = None, hi: Optional[float] = None, lo_open: bool = True,
                hi_open: bool = False) -> Callable[[str], float]:
    """argparse type: a finite number above ``lo`` (or at least, with ``lo_open=False``) and below ``hi``."""
    def parse(text: str) -> float:
        v = _number(text, float, "a number")
        bad_lo = lo is not None and (v <= lo if lo_open else v < lo)
        bad_hi = hi is not None and (v >= hi if hi_open else v > hi)
        if bad_lo or bad_hi:
            lo_s = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
            hi_s = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
            want = " and ".join(filter(None, (lo_s, hi_s)))
            raise argparse.ArgumentTypeError(f"{v:g} is out of range; give a number {want}")
        return v

    parse.__name__ = "number"
    return parse


def _bounds(lo, hi) -> str:
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    return f"an integer >= {lo}" if lo is not None else f"an integer <= {hi}"


def check_distinct_devices(names) -> None:
    """``--device X --device X`` would run two agents on one journal: refuse it."""
    seen = set()
    for n in names:
        if n in seen:
            raise BadInput(f"--device {n!r} is given twice; name each device once")
        seen.add(n)


# --- inventory entries -------------------------------------------------------------------------------------------
# ranges of the numeric keys of a device entry (type checked by inventory._check); None: no upper bound
ENTRY_RANGES = {"port": (1, 65535), "threads": (1, None), "batch": (1, None), "runs_per_sample": (1, None),
                "connect_timeout": (0, None), "entry_timeout": (0, None), "timeout": (0, None),
                "retries": (0, None), "backoff_s": (0, None)}
POSITIVE = ("connect_timeout", "entry_timeout")  # 0 would time out at once


def check_entry_value(file, where: str, key: str, value) -> None:
    """A numeric inventory value in its range: a port 1-65535 (never wrapped), finite non-negative seconds."""
    if key not in ENTRY_RANGES:
        return
    lo, hi = ENTRY_RANGES[key]
    if isinstance(value, float) and not math.isfinite(value):
        raise BadInput(f"{file}: {where}.{key} = {value!r} should be a finite number")
    if value < lo or (hi is not None and value > hi) or (key in POSITIVE and value <= 0):
        want = (f"from {lo} to {hi}" if hi is not None else
                f"{'above' if key in POSITIVE else 'at least'} {lo}")
        raise BadInput(f"{file}: {where}.{key} = {value!r} is out of range; give a value {want}")


def check_key_file(file, where: str, key: str) -> None:
    """A missing SSH key is not a transient fault: say so before connecting (never retried)."""
    p = Path(key).expanduser()
    if not p.is_file():
        raise BadInput(f"{file}: {where}.key = {key!r}: no such key file ({p}); fix the path or remove the key "
                       "to use ~/.ssh/config and the SSH agent")


# --- resource quantities -----------------------------------------------------------------------------------------
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
QUANTITY = re.compile(rf"\s*({_NUMBER})\s*([A-Za-z]*)\s*")
UNITS = {"latency": {"ms": 1.0, "": 1.0}, "params": {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9},
         "flops": {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}}


def parse_quantity(text: str, resource: str, where: str) -> float:
    """A positive finite amount of ``resource`` (latency, params, flops) with a unit that fits it.

    Raises:
        BadInput naming ``where`` (the option or constraint the text came from).
    """
    m = QUANTITY.fullmatch(text)
    units = UNITS[resource]
    if not m:
        raise BadInput(f"{where}: {text!r} is not a number; write e.g. "
                       f"{'40ms' if resource == 'latency' else '4M'}")
    value, unit = m.groups()
    if unit not in units:
        known = ", ".join(repr(u) for u in units if u) + (" or none" if "" in units else "")
        raise BadInput(f"{where}: unit {unit!r} does not fit {resource}; use {known}")
    v = float(value) * units[unit]
    if not math.isfinite(v) or v <= 0:
        raise BadInput(f"{where}: {text!r} must be a positive finite amount")
    return v


def parse_targets(text: str) -> list:
    """``--target-ms 4,5.5,6``: positive finite milliseconds, in the order given."""
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise BadInput(f"--target-ms {text!r} is not a number or comma-separated numbers") from None
        if not math.isfinite(v) or v <= 0:
            raise BadInput(f"--target-ms {text!r}: {part.strip()!r} is not a positive finite number of ms")
        out.append(v)
    return out


def distinct_names(constraints: list, specs: list) -> list:
    """(resource, bound) pairs whose resources have distinct names: a repeated name (two LUTs of one device, or
    ``params`` twice) becomes the constraint as written, so reports keep every constraint apart."""
    from dataclasses import replace

    out, seen = [], set()
    for (res, bound), spec in zip(constraints, specs):
        name = res.name
        if name in seen:
            name = spec.split("<=")[0].strip()
            n = 2
            while name in seen:
                name, n = f"{spec.split('<=')[0].strip()}#{n}", n + 1
            res = replace(res, name=name)
        seen.add(name)
        out.append((res, bound))
    return out


# --- output paths ------------------------------------------------------------------------------------------------
def _writable_dir(start: Path, path: Path, option: str) -> None:
    """The nearest existing folder at or above ``start`` must be a writable directory (``path`` goes under it)."""
    p = start
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise NotWritable(f"{option} {str(path)!r}: {str(p)!r} is a file, not a directory; choose another path")
    if not os.access(p, os.W_OK | os.X_OK):
        raise NotWritable(f"{option} {str(path)!r}: directory {str(p)!r} is not writable; choose another path")


def check_output_file(path, option: str) -> None:
    """Before any work: ``path`` can be written as a file (not a directory, in a writable directory)."""
    path = Path(path)
    if path.is_dir():
        raise NotWritable(f"{option} {str(path)!r} is a directory; give a file name")
    _writable_dir(path.parent, path, option)  # files are written atomically: a temporary file beside it


def check_output_dir(path, option: str) -> None:
    """Before any work: ``path`` is, or can be created as, a writable directory."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotWritable(f"{option} {str(path)!r} is a file, not a directory; choose another path")
    _writable_dir(path, path, option)


# --- LUT files ---------------------------------------------------------------------------------------------------
def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


METHOD_INTS = {"warmup_n": 0, "min_n": 0, "max_n": 1, "bootstrap": 0, "pairs": 0, "processes": 1, "rounds": 0,
               "max_processes": 1, "seed": 0}
METHOD_FLOATS = ("warmup_s", "target_ci", "budget_s")


def check_lut_data(data: dict, path) -> None:
    """The schema's types and values of a LUT dict (after migrations); raises BadLut naming the file and key."""
    from .keys import EntryKey
    from .space import SPACES

    def bad(msg: str):
        raise BadLut(f"LUT {path}: {msg}; re-profile, or restore the file")

    for key, typ, what in (("space", dict, "a table"), ("device", dict, "a table"), ("runtime", dict, "a table"),
                           ("method", dict, "a table"), ("entries", dict, "a table of entries")):
        if not isinstance(data.get(key), typ):
            bad(f"{key!r} is {_show(data.get(key))}, should be {what}")
    sp = data["space"]
    if not isinstance(sp.get("name"), str) or not isinstance(sp.get("hash"), str):
        bad(f"space = {_show(sp)} should have a string name and hash")
    if sp["name"] not in SPACES and sp["name"] != "nb201":  # nb201: the cell space declared in code
        bad(f"unknown space {sp['name']!r}; known: {', '.join(sorted([*SPACES, 'nb201']))}")
    if not isinstance(data["device"].get("name"), str) or not data["device"]["name"]:
        bad(f"device.name = {_show(data['device'].get('name'))} should be a device name")
    if not isinstance(data["device"].get("fingerprint", {}), dict):
        bad(f"device.fingerprint = {_show(data['device'].get('fingerprint'))} should be a table")
    rt = data["runtime"]
    if not isinstance(rt.get("name"), str):
        bad(f"runtime.name = {_show(rt.get('name'))} should be a runtime name")
    # a fitted table (profile import) knows no thread count: it leaves the key out; tables written before that fix
    # said 0 for "unknown" and still load
    unknown_threads = data.get("kind") == "fitted" and rt.get("threads") == 0
    if "threads" in rt and not unknown_threads and not (isinstance(rt["threads"], int)
                                                        and not isinstance(rt["threads"], bool) and rt["threads"] >= 1):
        bad(f"runtime.threads = {_show(rt['threads'])} should be an integer >= 1")
    batch = data.get("batch")
    if not (isinstance(batch, int) and not isinstance(batch, bool) and batch >= 1):
        bad(f"batch = {_show(batch)} should be an integer >= 1")
    for k, v in data["method"].items():
        if k in METHOD_INTS and not (isinstance(v, int) and not isinstance(v, bool) and v >= METHOD_INTS[k]):
            bad(f"method.{k} = {_show(v)} should be an integer >= {METHOD_INTS[k]}")
        if k in METHOD_FLOATS and not (_finite(v) and v >= 0):
            bad(f"method.{k} = {_show(v)} should be a finite number >= 0")
    cell = sp["name"] == "nb201"  # the cell space's entries are its pieces; a fitted table has weights instead
    if not data["entries"] and not (cell and data.get("kind") == "fitted"):
        bad("has no entries")
    for key, e in data["entries"].items():
        try:
            if not cell:
                parsed = EntryKey.parse(key)
                if parsed.kind not in ("block", "pair"):
                    raise ValueError("a LUT holds blocks and 'pair:<block>+<block>' entries")
                parsed.blocks()
        except ValueError as exc:
            bad(f"entry key {key!r} is not a block ({exc})")
        if not isinstance(e, dict):
            bad(f"entry {key!r} is {_show(e)}, should be a table")
        flags = e.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            bad(f"entry {key!r}: flags = {_show(flags)} should be a list of flag names")
        m = e.get("median_ms")
        if not _finite(m) or m <= 0:
            bad(f"entry {key!r}: median_ms = {_show(m)} should be a positive finite number of ms")
        for k in ("p10_ms", "p90_ms", "mean_ms", "std_ms", "ci95_ms"):
            if k in e and not (_finite(e[k]) and e[k] >= 0):
                bad(f"entry {key!r}: {k} = {_show(e[k])} should be a finite number >= 0")
        s = e.get("samples_ms")
        if s is not None and not (isinstance(s, list) and all(_finite(v) and v > 0 for v in s)):
            bad(f"entry {key!r}: samples_ms should be a list of positive finite numbers")
    bounds = data.get("boundaries")
    if bounds is not None:
        if not isinstance(bounds, dict):
            bad(f"boundaries is {_show(bounds)}, should be a table")
        for key, b in bounds.items():
            if not (isinstance(b, dict) and _finite(b.get("delta_ms"))):
                bad(f"boundary {key!r}: delta_ms = {_show(b.get('delta_ms') if isinstance(b, dict) else b)} "
                    "should be a finite number of ms")
    cal = data.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict):
            bad(f"calibration is {_show(cal)}, should be a table or null")
        for k in ("a", "b"):
            if not _finite(cal.get(k)):
                bad(f"calibration.{k} = {_show(cal.get(k))} should be a finite number")
        if cal["a"] <= 0:
            bad(f"calibration.a = {cal['a']!r} should be positive (measured = a * predicted + b)")


def check_block_table(lut, table: Dict[str, float], raw: Dict[str, float]) -> None:
    """The in-context table must keep every block and every network positive.

    Args:
        lut: the Lut (for its path, space and calibration).
        table: block -> ms as the latency model sees it (boundary-corrected, calibrated).
        raw: block -> ms boundary-corrected but not calibrated.
    """
    for key, t in raw.items():
        if not t > 0:
            b = lut.data.get("boundaries") or {}
            from .keys import boundary_key
            from .space import BlockSpec

            bk = boundary_key(BlockSpec.parse(key))
            raise BadLut(f"LUT {lut.path}: boundary {bk!r} delta_ms = {b.get(bk, {}).get('delta_ms')!r} is not "
                         f"smaller than block {key!r} ({lut.median(key)!r} ms) it corrects; re-profile")
    if not math.isfinite(4 * sum(table.values())):  # a network sums up to every slot's block
        raise BadLut(f"LUT {lut.path}: its latencies (with calibration a = {(lut.calibration or {}).get('a')!r}) "
                     "overflow when summed over a network; re-profile, or restore the file")
    cal = lut.calibration
    if cal:
        space = lut.space
        # with every block positive, the smallest network is the fixed parts and each stage's cheapest blocks at
        # its smallest depth; a calibration that keeps it positive keeps every network positive (a > 0)
        smallest = sum(raw[str(b)] for b in space.fixed_blocks()) + sum(
            min(raw[str(space.block(s, slot, c))] for c in space.configs)
            for s in range(space.n_stages) for slot in range(min(space.depths)))
        pred = cal["a"] * smallest + cal["b"]
        if not pred > 0:
            raise BadLut(f"LUT {lut.path}: calibration a = {cal['a']!r}, b = {cal['b']!r} predicts {pred:.3f} ms "
                         f"for the smallest network ({smallest:.3f} ms uncalibrated); every prediction must stay "
                         "positive: recalibrate (validate --calibrate)")


def _show(v) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."
