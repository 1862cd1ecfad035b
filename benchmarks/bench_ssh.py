"""Issue 4 figures: TFLite vs ONNX Runtime medians for the same blocks on this machine, and what the SSH path costs
against the local one for the same job (wall time, and whether it moves the measured medians beyond noise).

    python benchmarks/bench_ssh.py [--blocks 12] [--budget 1.0] [--reps 3] [--json out.json]

The SSH "device" is this machine behind a real OpenSSH sshd on loopback (tests/sshd.py), so the only difference from
the local run is the transport. Noise is judged against a second local run of the same job: the order is local,
ssh alternated ``--reps`` times (after a discarded local warm-up), so drift hits both paths alike.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from profiler.devices import LOCAL  # noqa: E402
from profiler.inventory import resolve_device  # noqa: E402
from profiler.lut import Lut  # noqa: E402
from profiler.runner import Method, profile  # noqa: E402
from profiler.space import HARDCORE  # noqa: E402


def pick_blocks(n: int):
    """``n`` blocks spread over the space: every stage's two shapes, configs cycling through er, k, se."""
    blocks = HARDCORE.unique_blocks()
    idx = np.linspace(0, len(blocks) - 1, n).round().astype(int)
    return [(str(blocks[i]), blocks[i], None) for i in dict.fromkeys(idx)]


def method(budget: float) -> Method:
    kw = dict(target_ci=0.01, budget_s=budget, warmup_s=0.5)
    if "processes" in Method.__dataclass_fields__:
        kw.update(processes=1, rounds=0)  # one adaptive process per run: the same method on both paths
    return Method(**kw)


def run(label, dev, runtime, entries, m, out, factory=None):
    t0 = time.monotonic()
    path, timing = profile(dev, HARDCORE, runtime, 1, m, out, transport_factory=factory, progress=False,
                           entries=entries)
    wall = time.monotonic() - t0
    med = {k: v["median_ms"] for k, v in Lut.load(path).data["entries"].items()}
    ci = {k: v["ci95_ms"] / v["median_ms"] for k, v in Lut.load(path).data["entries"].items()}
    print(f"{label:<14} wall {wall:6.1f}s  export {timing['export_s']:5.1f}s  measure {timing['measure_s']:5.1f}s  "
          f"overhead {timing['overhead_s']:5.2f}s", file=sys.stderr)
    return {"wall_s": wall, **timing, "median_ms": med, "ci_rel": ci}


def ratio_stats(a: dict, b: dict) -> dict:
    r = np.array([b[k] / a[k] for k in a])
    return {"median_ratio": float(np.median(r)), "max_abs_dev_pct": float(np.max(np.abs(r - 1)) * 100),
            "mean_abs_dev_pct": float(np.mean(np.abs(r - 1)) * 100)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--blocks", type=int, default=12)
    p.add_argument("--budget", type=float, default=1.0, help="seconds of timed calls per entry (default 1)")
    p.add_argument("--reps", type=int, default=3, help="local/ssh repetitions, alternated (default 3)")
    p.add_argument("--json", help="write all figures here")
    args = p.parse_args(argv)
    from tests.sshd import Sshd

    entries = pick_blocks(args.blocks)
    m = method(args.budget)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    res = {"blocks": [k for k, _, _ in entries], "method": {"target_ci": m.target_ci, "budget_s": m.budget_s}}

    # 1. TFLite (XNNPACK) vs ONNX Runtime, one thread each, same blocks, this machine
    ort = LOCAL.runtime_settings("onnxruntime", 1)
    res["local_ort"] = run("local ORT", LOCAL, ort, entries, m, tmp / "a")
    try:
        res["local_tflite"] = run("local TFLite", LOCAL, LOCAL.runtime_settings("tflite", 1), entries, m, tmp / "t")
    except Exception as exc:  # litert-torch missing: say so, keep the SSH figures
        res["local_tflite"] = {"error": f"{type(exc).__name__}: {exc}"}

    # 2. the same ORT job over SSH (loopback sshd) and locally, alternated `--reps` times after one discarded
    #    local warm-up run, so drift hits both paths alike; rep-to-rep spread of each path is the noise floor
    sshd = Sshd(tmp / "sshd").start()
    try:
        inv = tmp / "devices.toml"
        inv.write_text(sshd.device_toml("loop", "xeon", tmp / "work"))
        dev = resolve_device("loop", str(inv))
        from profiler.ssh import SSHTransport

        run("local warm-up", LOCAL, ort, entries, m, tmp / "w")
        res["local_reps"], res["ssh_reps"] = [], []
        for r in range(args.reps):
            res["local_reps"].append(run(f"local ORT #{r + 1}", LOCAL, ort, entries, m, tmp / f"l{r}"))
            res["ssh_reps"].append(run(f"ssh ORT #{r + 1}", dev, ort, entries, m, tmp / f"s{r}",
                                       lambda: SSHTransport(dev)))
    finally:
        sshd.stop()

    def pooled(reps):
        return {k: float(np.median([r["median_ms"][k] for r in reps])) for k in reps[0]["median_ms"]}

    L, S = pooled(res["local_reps"]), pooled(res["ssh_reps"])
    res["ssh_vs_local"] = ratio_stats(L, S)
    res["local_vs_local"] = ratio_stats(res["local_reps"][0]["median_ms"], res["local_reps"][1]["median_ms"])
    res["ssh_vs_ssh"] = ratio_stats(res["ssh_reps"][0]["median_ms"], res["ssh_reps"][1]["median_ms"])
    print(f"\n| block | ORT local (ms, median of {args.reps}) | ORT ssh | ssh/local | TFLite local | TFLite/ORT |")
    print("|---|---|---|---|---|---|")
    tfl = res["local_tflite"].get("median_ms", {})
    tfl_ort = res["local_ort"]["median_ms"]
    for k, _, _ in entries:
        t = tfl.get(k)
        tail = f"{t:.4f} | {t / tfl_ort[k]:.2f} |" if t else "n/a | n/a |"
        print(f"| `{k}` | {L[k]:.4f} | {S[k]:.4f} | {S[k] / L[k]:.3f} | {tail}")
    if tfl:
        r = np.array([tfl[k] / tfl_ort[k] for k in tfl])
        res["tflite_vs_ort"] = {"median_ratio": float(np.median(r)), "min": float(r.min()), "max": float(r.max())}
        print(f"\nTFLite/ORT median ratio {np.median(r):.2f} (range {r.min():.2f}-{r.max():.2f}), same run order")
    for name in ("ssh_vs_local", "local_vs_local", "ssh_vs_ssh"):
        st = res[name]
        print(f"{name}: median ratio {st['median_ratio']:.4f}, mean |dev| {st['mean_abs_dev_pct']:.2f} %, "
              f"max |dev| {st['max_abs_dev_pct']:.2f} %")
    for name in ("local_reps", "ssh_reps"):
        reps = res[name]
        print(f"{name}: wall {np.mean([r['wall_s'] for r in reps]):.2f} s, measure "
              f"{np.mean([r['measure_s'] for r in reps]):.2f} s, overhead {np.mean([r['overhead_s'] for r in reps]):.2f}"
              f" s (mean of {len(reps)})")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
