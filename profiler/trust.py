"""How far to trust a stored LUT: flagged entries, and whether it was measured on the device being used now.

A LUT belongs to the machine it was measured on: the same blocks read 0.67x a LUT of an AMD EPYC VM on an Intel Xeon
VM (docs/BENCHMARKS.md). And a LUT most of whose entries missed their CI target is a rough table
however new it is. Neither is an error (a rough or foreign table can still be what the user wants to plan with), so
``search``, ``validate`` and the Python API (``search.problem.solve`` given a LUT) say it in one line each.
"""
from __future__ import annotations

import sys
import warnings
from typing import Dict, List, Optional, Tuple

FLAGGED_MAX = 0.10  # more than this fraction of entries flagged: warn

# The parts of a fingerprint that identify the machine and runtime. Load, temperatures, frequencies, hostname and
# pinned cores change from run to run on the same machine and are not compared. (An emulated device has its own
# warnings: ``Lut.caveats`` and validate's.)
STABLE_KEYS = ("cpu_model", "cpu_count", "machine", "runtime")


class LutTrustWarning(UserWarning):
    """The LUT has many flagged entries, or was measured on another machine than the one in use."""


# Flags about single calls, not about the median: one call among hundreds preempted, or calls of a busy device
# spread wide. Interleaved one-call samples on a VM raise them on nearly every entry (all 159 of every LUT made here
# on 2026-11-29) while the median's CI was reached, so they do not make a table rough and are not counted.
DISPERSION = ("unstable_std", "outliers")


def flagged(lut) -> Tuple[int, Dict[str, int]]:
    """(entries whose median is in doubt: any flag but the dispersion ones, e.g. ci_not_reached; count by flag,
    dispersion flags included) of a LUT."""
    n, by = 0, {}
    for e in lut.entries.values():
        flags = e.get("flags") or []
        if any(f not in DISPERSION for f in flags):
            n += 1
        for f in flags:
            by[f] = by.get(f, 0) + 1
    return n, by


def flagged_warning(lut) -> Optional[str]:
    """One line when more than 10 % of the LUT's entries have a median in doubt (missed their CI target), else
    None."""
    n, by = flagged(lut)
    total = len(lut.entries)
    if not total or n <= FLAGGED_MAX * total:
        return None
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(by.items(), key=lambda kv: -kv[1]))
    return (f"warning: {lut.path or 'LUT'}: {n} of {total} entries flagged with a median in doubt ({kinds}); its "
            f"numbers are rough (re-profile on a quiet device, or raise --budget)")


def fingerprint_diff(stored: dict, now: dict) -> List[Tuple[str, object, object]]:
    """(key, stored value, value now) for every stable fingerprint part that differs; a part missing on either
    side (an older agent) is not a difference."""
    out = []
    for k in STABLE_KEYS:
        a, b = stored.get(k), now.get(k)
        if a is None or b is None:
            continue
        if a != b:
            out.append((k, a, b))
    return out


def device_warning(lut, now: dict, device: str = "") -> Optional[str]:
    """One line when the device measured now (``now``: the agent's fingerprint) is not the machine the LUT was
    measured on, else None."""
    stored = (lut.data.get("device") or {}).get("fingerprint") or {}
    diff = fingerprint_diff(stored, now)
    if not diff:
        return None
    what = "; ".join(f"{k} {a!r} in the LUT, {b!r} now" for k, a, b in diff)
    return (f"warning: {lut.path or 'LUT'} was measured on another machine than device {device or '?'!r} is now "
            f"({what}); a LUT belongs to the machine it was measured on: profile this one")


def warn_lines(lut, now: Optional[dict] = None, device: str = "") -> List[str]:
    lines = [flagged_warning(lut)]
    if now:
        lines.append(device_warning(lut, now, device))
    return [line for line in lines if line]


def print_warnings(lut, now: Optional[dict] = None, device: str = "", stream=None) -> List[str]:
    """Print each trust warning as one line on stderr (the CLIs); returns them."""
    lines = warn_lines(lut, now, device)
    for line in lines:
        print(line, file=stream or sys.stderr, flush=True)
    return lines


def api_warnings(lut, now: Optional[dict] = None, device: str = "") -> List[str]:
    """Issue each trust warning as a ``LutTrustWarning`` (the Python API); returns them."""
    lines = warn_lines(lut, now, device)
    for line in lines:
        warnings.warn(line.replace("warning: ", "", 1), LutTrustWarning, stacklevel=3)
    return lines
