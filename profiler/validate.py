"""``validate``: measure random whole networks end to end and compare them with the LUT's prediction.

The prediction is HardCoRe-NAS eq. (3), LAT(α, β) = αᵀΘβ, evaluated at one-hot (α, β), with Θ built from the LUT's
in-context block table (``Lut.block_table``); a calibration stored with the LUT is applied when present. Networks
are measured through the same agent, transport, journal and method as ``profile``.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from .errors import BadInput, BadLut
from .files import atomic_write_json
from .journal import job_id, journal_path
from .keys import EntryKey, anchor_key, is_pair, lut_key, net_key
from .lut import Lut, latest, lut_dir
from .runner import measure, pool_parts, validate_method
from .report import metrics, plot
from .space import Arch, BlockSpec, Space


def predictor(lut: Lut, calibrated: bool = True):
    """A function Arch -> predicted ms: eq. (3) on the in-context block table (calibration folded in if stored)."""
    model = lut.latency_model(calibrated=calibrated)
    return lambda arch: float(model.predict_arch(arch))


STALE = 0.05  # |device now / LUT − 1| above this: the LUT no longer describes the device


def anchor_keys(lut: Lut, n: int = 8) -> List[str]:
    """``n`` block keys of the LUT at evenly spaced quantiles of their measured medians (pairs excluded)."""
    blocks = sorted((k for k in lut.entries if not is_pair(k)), key=lambda k: lut.entries[k]["median_ms"])
    if n <= 0 or not blocks:
        return []
    idx = sorted({int(round(q)) for q in np.linspace(0, len(blocks) - 1, min(n, len(blocks)))})
    return [blocks[i] for i in idx]


def drift_report(lut: Lut, measured: Dict[str, dict], keys: Sequence[str]) -> dict:
    """The device's speed now relative to the LUT: raw medians of anchor blocks re-measured / their LUT medians.

    ``measured`` maps the LUT's block keys to the entries measured now.

    The validation compares networks with a LUT measured earlier; if the device itself got slower or faster since
    (another VM host, thermal state, a frequency governor, other load), every network is off by the same factor and
    R² and the ratio blame the latency model for it. The anchors separate the two.
    """
    ratios = [measured[k]["median_ms"] / lut.entries[k]["median_ms"] for k in keys]
    r = float(np.median(ratios))
    return {"ratio": r, "min": float(min(ratios)), "max": float(max(ratios)), "anchors": list(keys),
            "ratios": ratios, "stale": bool(abs(r - 1.0) > STALE)}


def stale_warning(device: str, lut: Lut, drift: dict) -> str:
    return (f"warning: device {device!r} now runs its blocks at {drift['ratio']:.3f}x the times in {lut.path} "
            f"({len(drift['anchors'])} blocks, {drift['min']:.3f}-{drift['max']:.3f}x): the LUT no longer "
            f"describes this device; re-profile with: profile --device {device}")



def same_run_lut(lut: Lut, measured: Dict[str, dict]) -> Lut:
    """``lut`` with every entry replaced by its re-measurement (``measured``, keyed like the LUT): the table the
    device would have given in this run. Boundaries are fitted again. A stored calibration is carried along; predict
    with ``predictor(table, calibrated=False)`` to leave it out. One fitted on a stored table's predictions holds that
    table's drift and did not carry over to another run's table (ratio 1.074 and 1.137 against 0.968 and 1.027); one
    fitted on a same-run table, as ``--calibrate`` now does, did (ratio 0.999-1.003 against 0.986-0.990 in three
    runs; docs/BENCHMARKS.md, issue 18), so the report gives both."""
    data = json.loads(json.dumps({k: v for k, v in lut.data.items() if k != "entries"}))
    # entries not re-measured (blocks no sampled network uses, with --same-run) keep their stored values
    data["entries"] = {k: measured.get(k, v) for k, v in lut.entries.items()}
    new = Lut(data)
    data["boundaries"] = new.fit_boundaries()
    return new


def used_entries(lut: Lut, archs: Sequence[Arch]) -> List[str]:
    """The LUT keys a prediction of ``archs`` reads: their blocks, and every boundary pair (which fit the boundary
    correction each of them uses), in the LUT's order."""
    used = {str(b) for a in archs for b in a.blocks()}
    return [k for k in lut.entries if k in used or is_pair(k)]


def same_run_report(lut: Lut, done: Dict[str, dict], parts: Dict[str, List[dict]], archs: Sequence[Arch],
                    meas: Sequence[float], cycles: int) -> dict:
    """The networks predicted from the LUT's entries as re-measured in this run, pooled and cycle by cycle.

    ``done`` holds the entries pooled over all passes and ``parts``, per key, one entry per pass in pass order
    (keys ``lut:<key>`` and ``net:<arch>``)."""
    keys = [k for k in lut.entries if lut_key(k) in done]  # all of them (--cycles), or those in use (--same-run)
    blocks = [k for k in keys if not is_pair(k)]
    same = same_run_lut(lut, {k: done[lut_key(k)] for k in keys})
    predict = predictor(same, calibrated=False)
    pred = [predict(a) for a in archs]
    out = metrics(pred, meas)
    out["worst_arch"] = str(archs[out.pop("worst_index")])
    by_cycle = []
    for c in range(cycles):
        table = same_run_lut(lut, {k: parts[lut_key(k)][c] for k in keys})
        predict_c = predictor(table, calibrated=False)
        fit = metrics([predict_c(a) for a in archs], [parts[net_key(a)][c]["median_ms"] for a in archs])
        by_cycle.append({"blocks_vs_lut": drift_report(lut, table.entries, blocks)["ratio"],
                         "ratio": fit["ratio"], "r2": fit["r2"]})
    out.update({"cycles": cycles,
                "blocks_vs_lut": drift_report(lut, same.entries, blocks), "by_cycle": by_cycle, "predicted_ms": pred})
    if lut.calibration:  # the stored calibration applied to the same-run table too
        cal = predictor(same)
        fit = metrics([cal(a) for a in archs], meas)
        out["with_calibration"] = {k: fit[k] for k in ("r2", "ratio", "mape_pct", "within_5_pct", "within_10_pct")}
    return out


def spread_sample(space: Space, predict, n: int, seed: int = 0, candidates: int = 3000) -> List[Arch]:
    """``n`` distinct architectures whose predictions spread evenly over the range random sampling reaches.

    Candidates come from distributions tilted towards cheap or costly configs and depths, so the extremes of the
    space are represented; then for evenly spaced latency targets the nearest unused candidate is taken.
    """
    rng = np.random.default_rng(seed)
    nc, nd = len(space.configs), len(space.depths)
    pool = {}
    for i in range(candidates):
        tilt = rng.uniform(-3, 3)
        pc = np.exp(tilt * np.arange(nc) / nc)
        pd = np.exp(tilt * np.arange(nd) / nd)
        stages = tuple(tuple(int(c) for c in rng.choice(nc, size=int(rng.choice(space.depths, p=pd / pd.sum())),
                                                        p=pc / pc.sum())) for _ in range(space.n_stages))
        a = Arch(stages, space)
        pool[str(a)] = a
    archs = list(pool.values())
    preds = np.array([predict(a) for a in archs])
    lo, hi = np.percentile(preds, [0.5, 99.5])
    chosen, used = [], set()
    for t in np.linspace(lo, hi, n):
        for j in np.argsort(np.abs(preds - t)):
            if j not in used:
                used.add(j)
                chosen.append(archs[j])
                break
    return chosen


def fit_calibration(pred, meas, seed: int = 0) -> dict:
    """measured = a·predicted + b: fitted on one half and judged on the other (``improves``, the held-out figures),
    then fitted again on all of them for the (a, b) kept: fitted on 25 of 50 networks, a and b nearly cancelled over
    the networks' range (docs/BENCHMARKS.md, issue 18)."""
    p, m = np.asarray(pred, float), np.asarray(meas, float)
    idx = np.random.default_rng(seed).permutation(len(p))
    fit_i, test_i = idx[: len(p) // 2], idx[len(p) // 2:]
    a, b = np.polyfit(p[fit_i], m[fit_i], 1)
    before, after = metrics(p[test_i], m[test_i]), metrics(a * p[test_i] + b, m[test_i])
    a_all, b_all = np.polyfit(p, m, 1)
    return {"a": float(a_all), "b": float(b_all), "fit_on": len(p), "held_out": len(test_i),
            "judged": {"a": float(a), "b": float(b), "fit_on": len(fit_i)},
            "held_out_before": before, "held_out_after": after,
            "improves": after["mape_pct"] < before["mape_pct"]}


def check_outputs(args) -> None:
    """Before measuring anything: the report and the plot can be written (a long run is not lost at the end)."""
    from .checks import check_output_file

    for option, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_output_file(path, option)


def run_validate(args) -> int:
    from .devices import with_overrides
    from .inventory import resolve_device

    names = args.device or ["local"]
    if len(names) != 1:
        raise BadInput("validate takes one --device at a time")
    dev = with_overrides(resolve_device(names[0], args.devices), batch=args.batch)
    if args.n < 4:
        raise BadInput(f"--n {args.n} is too few networks to validate; use at least 4")
    check_outputs(args)
    if args.lut:
        lut = Lut.load(args.lut)
    else:
        from .space import get_space

        space = get_space(args.space)
        found = latest(Path(args.out), dev.name, space)
        if found is None:
            raise BadLut(f"no LUT for device {dev.name!r} under {lut_dir(Path(args.out), dev.name, space)}; "
                         f"run: profile --device {dev.name}")
        lut = Lut.load(found)
    space = lut.space
    lut.check_space(space)
    for line in lut.caveats():
        print(f"validate: warning: {line}", file=sys.stderr)
    if lut.device != dev.name:
        raise BadLut(f"{lut.path} was measured on device {lut.device!r}; validate it with --device {lut.device}, "
                     f"or pass a LUT of {dev.name!r}")
    runtime = lut.runtime_for(dev)
    if args.runtime and args.runtime != runtime["name"]:
        raise BadInput(f"--runtime {args.runtime} differs from the LUT's runtime {runtime['name']!r}")
    if space.name == "nb201":  # the cell space: its pieces, networks and report (profiler/nb201_validate.py)
        from .nb201_validate import run_validate_nb201

        return run_validate_nb201(args, dev, lut)
    predict = predictor(lut)
    archs = [] if args.drift else spread_sample(space, predict, args.n, args.seed)
    anchors = anchor_keys(lut, args.anchors)
    if args.drift and not anchors:
        raise BadInput("--drift needs at least one anchor block; use --anchors N with N >= 1")
    nets = [(net_key(a), a, None) for a in archs]
    # The anchors get a pass of their own, among blocks as when the LUT was profiled. Interleaved with whole
    # networks they read slow by the cache state the networks leave behind (up to 1.35x on the smallest block,
    # 1.12x median, in a run where the networks themselves were within 1.7 % of the prediction): that is the
    # context, not the device (docs/BENCHMARKS.md, "The device moved between sessions").
    method = validate_method(lut.method(), args)
    passes = [("anchors", None, method, [(anchor_key(k), BlockSpec.parse(k), None) for k in anchors]),
              ("networks", None, method, nets)]
    cycles = 0 if args.drift else args.cycles
    if cycles < 0:
        raise BadInput(f"--cycles {cycles}: give a number of cycles >= 1, or 0 for none")
    if args.same_run < 0:
        raise BadInput(f"--same-run {args.same_run}: give a number of passes >= 1, or 0 for none")
    subset = not cycles and not args.drift and args.same_run > 0
    if subset:
        # issue 18, every run: the entries the sampled networks use, re-measured in the same workers as the networks,
        # each round the blocks then the networks (Method.phases): both read the device's speed of the same second,
        # which moved 10-20 % between passes a minute apart here, and a block still follows blocks, as profiled
        cycles = args.same_run
        per = max(2, method.processes // cycles)  # >= 2: one worker would switch the agent to its adaptive mode
        # the blocks every 4th round: a quarter of the networks' samples, as many as the passes of their own took
        # before (timing them every round cost 160 s more in a 50-network run, 680 s in all)
        phased = replace(method, processes=per, max_processes=per, phases=4)
        used = used_entries(lut, archs)
        table = [(lut_key(k), *EntryKey.parse(k).blocks()) for k in used]
        anchors = [k for k in used if not is_pair(k)]
        passes = [(f"blocks+networks {c + 1}/{cycles}", c, phased, table + nets) for c in range(cycles)]
    elif cycles:
        # --cycles N: the LUT's own entries re-measured in N passes alternating with N passes of the networks, each
        # pass with 1/N of the LUT's workers, so blocks and networks see the same stretches of the device's state
        per = method.processes // cycles
        if per < 2:
            raise BadInput(f"--cycles {cycles} leaves {per} worker(s) per pass of the {method.processes} that "
                           f"{lut.path} was measured with; use --cycles {max(1, method.processes // 2)} or fewer")
        # no top-up workers inside a pass: the CI that counts is that of the samples pooled over all passes
        cyc_method = replace(method, processes=per, max_processes=per)
        table = [(lut_key(k), *EntryKey.parse(k).blocks()) for k in lut.entries]
        anchors = [k for k in lut.entries if not is_pair(k)]  # all of them, measured among blocks
        passes = [(f"{kind} {c + 1}/{cycles}", c, cyc_method, entries) for c in range(cycles)
                  for kind, entries in (("blocks", table), ("networks", nets))]
    from .trust import device_warning, print_warnings

    trust = print_warnings(lut)  # issue 18: a rough table says so (once the input is known good)
    done, parts, journals, timing = {}, {}, [], {}
    for name, cycle, m, entries in passes:
        if not entries:
            continue
        blob = [str(lut.path), [k for k, _, _ in entries], asdict(m)] + ([] if cycle is None else [cycle])
        jpath = journal_path(lut_dir(Path(args.out), dev.name, space), job_id(*blob), "validate")
        got, journal, t = measure(dev, runtime, lut.data["batch"], m, entries, jpath,
                                  progress=not args.quiet, label=f"validate {name}")
        for k, v in got.items():
            parts.setdefault(k, []).append(v)
        journals.append(journal)
        for k, v in t.items():
            if isinstance(v, dict):  # the split of where the time went, summed part by part
                for kk, vv in v.items():
                    timing.setdefault(k, {})[kk] = timing.get(k, {}).get(kk, 0) + vv
            else:
                timing[k] = timing.get(k, 0.0) + v
    if not lut.emulated and any(j.fingerprint().get("emulated") for j in journals):
        print(f"validate: warning: device {dev.name!r} is emulated (qemu-user) now: these timings are not a real "
              "device's", file=sys.stderr)
    for k, v in parts.items():
        done[k] = v[0] if len(v) == 1 else pool_parts(k, v, method)
    other = device_warning(lut, journals[0].fingerprint() if journals else {}, dev.name)
    if other:
        print(other, file=sys.stderr, flush=True)
        trust.append(other)
    measured_key = lut_key if cycles else anchor_key
    drift = drift_report(lut, {k: done[measured_key(k)] for k in anchors}, anchors) if anchors else None
    if args.drift:
        report = {"lut": str(lut.path), "device": dev.name, "device_vs_lut": drift, "wall_s": timing,
                  "trust_warnings": trust}
        if args.json:
            atomic_write_json(Path(args.json), report, overwrite=True)
        for j in journals:
            j.remove()
        print(f"validate {dev.name} --drift: blocks now {drift['ratio']:.4f}x the LUT's ({len(anchors)} anchors)",
              file=sys.stderr)
        if drift["stale"]:
            print(stale_warning(dev.name, lut, drift), file=sys.stderr)
        print(f"{drift['ratio']:.4f}")
        return 0
    pred = [predict(a) for a in archs]
    meas = [done[net_key(a)]["median_ms"] for a in archs]
    report = metrics(pred, meas)
    if drift is not None:
        report["device_vs_lut"] = drift
    report.update({
        "lut": str(lut.path), "device": dev.name, "calibration_applied": lut.calibration,
        "networks": [{"arch": str(a), "predicted_ms": p, "measured_ms": m, "ci95_ms": done[net_key(a)]["ci95_ms"],
                      "n": done[net_key(a)].get("n")}
                     for a, p, m in zip(archs, pred, meas)],
        "wall_s": timing, "trust_warnings": trust,
    })
    report["worst_arch"] = str(archs[report.pop("worst_index")])
    if cycles:
        report["same_run"] = same = same_run_report(lut, done, parts, archs, meas, cycles)
        same["entries_re_measured"] = sum(1 for k in done if EntryKey.parse(k).kind == "lut")
        same["scope"] = "used" if subset else "all"
        same["phased"] = subset  # blocks timed in the networks' workers, each round (else passes of their own)
        for net, p in zip(report["networks"], same.pop("predicted_ms")):
            net["predicted_same_run_ms"] = p
    if args.calibrate:
        # on the same-run prediction where there is one: the model's own error (blocks inside a network), not how far
        # the device moved since profiling, which a calibration fitted on the stored prediction keeps and carries
        # into every later run (a = 0.873 fitted so made the next runs' same-run ratio 1.074 and 1.137 here)
        base = [n["predicted_same_run_ms"] for n in report["networks"]] if cycles else pred
        report["calibration"] = cal = fit_calibration(base, meas, args.seed)
        cal["fitted_on"] = "same_run" if cycles else "stored"
        if cal["improves"] and not lut.calibration:
            new = lut.calibrated(cal["a"], cal["b"], {k: v for k, v in cal.items() if k not in ("a", "b")})
            name = lut.path.name.replace(".json", f"-cal-{new.data['created'].replace(':', '').replace('-', '')}.json")
            report["calibrated_lut"] = str(new.save(lut.path.with_name(name)))
    if args.json:
        atomic_write_json(Path(args.json), report, overwrite=True)
    if args.plot:
        plot(Path(args.plot), pred, meas, f"{dev.name}: {len(archs)} networks, R² {report['r2']:.4f}, "
             f"ratio {report['ratio']:.4f}, ±5 % {report['within_5_pct']:.0f} %" +
             (f"\nsame run ({cycles} cycles): R² {report['same_run']['r2']:.4f}, ratio "
              f"{report['same_run']['ratio']:.4f}, ±5 % {report['same_run']['within_5_pct']:.0f} %" if cycles else ""),
             [n["predicted_same_run_ms"] for n in report["networks"]] if cycles else None)
    for j in journals:
        j.remove()
    print(f"validate {dev.name}: {report['n']} networks, LUT {lut.path}", file=sys.stderr)
    for k in ("r2", "ratio", "mape_pct", "within_5_pct", "within_10_pct", "kendall_tau", "worst_error_pct"):
        print(f"  {k:<15} {report[k]:.4f}")
    if drift is not None:
        print(f"  device_vs_lut   {drift['ratio']:.4f}  (anchor blocks re-measured / LUT)")
        if drift["stale"]:
            print(stale_warning(dev.name, lut, drift), file=sys.stderr)
    if cycles:
        sr = report["same_run"]
        n_re = sum(1 for k in done if EntryKey.parse(k).kind == "lut")
        how = "in the networks' workers" if subset else "alternating with the networks'"
        print(f"  same run: {n_re} of the LUT's {len(lut.entries)} entries re-measured in {cycles} passes {how} "
              f"(no calibration)")
        for k in ("r2", "ratio", "mape_pct", "within_5_pct", "within_10_pct", "kendall_tau", "worst_error_pct"):
            print(f"    {k:<13} {sr[k]:.4f}")
        if "with_calibration" in sr:
            print("    with the LUT's calibration: " + ", ".join(f"{k} {v:.4f}" for k, v in sr["with_calibration"].items()))
        print("    by cycle      " + ", ".join(f"blocks {c['blocks_vs_lut']:.3f}x LUT, networks {c['ratio']:.3f}x "
                                                f"their blocks" for c in sr["by_cycle"]))
    if "calibration" in report:
        c = report["calibration"]
        print(f"  calibration     a={c['a']:.4f} b={c['b']:.4f}: held-out MAPE {c['held_out_before']['mape_pct']:.2f}"
              f" -> {c['held_out_after']['mape_pct']:.2f} %" + (f"; stored as {report['calibrated_lut']}"
                                                                if "calibrated_lut" in report else ""))
    return 0
