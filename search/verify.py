"""``search --verify-on DEVICE``: the found networks measured on the device with the profiling path, and the device's
speed against the LUT's in the same run."""
from __future__ import annotations

from pathlib import Path
from typing import List


def verify(args, archs, rows, lut) -> List[str]:
    """Measure the found networks on a device with the profiling path; add measured_ms and its CI to each row.

    In the same run, a few anchor blocks of the LUT are measured too (as ``validate --drift`` does): each row gets
    ``device_vs_lut``, the device's block speed now over the LUT's, so that a network that misses its target by
    measurement can be told apart: the device got slower since it was profiled, or the prediction was wrong.
    Returns warning lines: the device is not the LUT's machine, or it no longer runs at the LUT's times."""
    from dataclasses import replace

    from profiler.inventory import resolve_device
    from profiler.lut import lut_dir
    from profiler.journal import job_id, journal_path
    from profiler.keys import anchor_key, net_key
    from profiler.runner import measure
    from profiler.space import BlockSpec
    from profiler.validate import anchor_keys, drift_report, stale_warning

    from .decode import is_cell

    dev = resolve_device(args.verify_on, args.devices)
    runtime = lut.runtime_for(dev)
    method = lut.method()
    d = lut_dir(Path(args.luts), dev.name, lut.space)
    entries = [(net_key(a), a, None) for a in archs]
    jpath = journal_path(d, job_id(*map(str, archs)), "verify")
    done, journal, _ = measure(dev, runtime, lut.data["batch"], replace(method), entries, jpath,
                               progress=not args.quiet, label="verify")
    anchors = [] if is_cell(lut.space) else anchor_keys(lut)
    drift, journals = None, [journal]
    if anchors:  # among blocks, as when the LUT was profiled; 4 workers, as make demo's drift check
        n = min(4, method.processes)
        got, aj, _ = measure(dev, runtime, lut.data["batch"], replace(method, processes=n, max_processes=n),
                             [(anchor_key(k), BlockSpec.parse(k), None) for k in anchors],
                             journal_path(d, job_id(str(lut.path), *anchors, *map(str, archs)), "verify"),
                             progress=not args.quiet, label="verify: device vs LUT")
        drift = drift_report(lut, {k: got[anchor_key(k)] for k in anchors}, anchors)
        journals.append(aj)
    from profiler.trust import device_warning

    other = device_warning(lut, journal.fingerprint(), dev.name)  # returned, printed with the other warnings
    for a, row in zip(archs, rows):
        e = done[net_key(a)]
        row["measured_ms"], row["measured_ci95_ms"] = e["median_ms"], e["ci95_ms"]
        row["verified_on"] = dev.name
        row["meets_target_measured"] = bool(e["median_ms"] - e["ci95_ms"] <= row["target_ms"])
        if drift is not None:
            row["device_vs_lut"] = drift["ratio"]
    for j in journals:
        j.remove()
    lines = [other] if other else []
    if drift is not None and drift["stale"]:
        missed = sum(not r["meets_target_measured"] for r in rows)
        lines.append(stale_warning(dev.name, lut, drift)
                     + (f" ({missed} found network(s) missed the target by measurement at this speed)" if missed else ""))
    return lines
