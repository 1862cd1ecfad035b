"""Cost and quality of `search --supernet` at default settings (issue 17), against the old full-mixture oracle.

In one run, on one machine, one child process at a time (each one's wall, CPU and peak RSS from wait4, its own):

1. one supernet training epoch with the settings of CKPT (`search train-supernet --epochs 1`, a fresh checkpoint);
2. `search --supernet CKPT` at default settings (the paired oracle, search/oracle.py), one process per seed with the
   three targets (10/50/90 % of the LUT's range: a sweep, one oracle), and for the first seed also one process per
   target (the cost of a single target, nothing shared);
3. with ``--reference-steps N``: the same sweeps with `--oracle fixed --steps N`, the old expected-output mixture on
   one fixed 256-image batch (at the default 300 steps it costs hours here: N is recorded).

Every found network is scored by one function no search used as its judge: a fresh ``SupernetOracle.true_loss``,
the network's single path on the whole validation split (BatchNorm with the split's statistics), and checked against
its target by prediction.

    taskset -c 0 .venv/bin/python benchmarks/bench_oracle.py --supernet CKPT --reference-steps 40

Writes benchmarks/out/bench_oracle.json (rewritten after every child process).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
LUT = ROOT / "luts/local/hardcore-mbv3/20261123T132532Z-onnxruntime-t1-b1-cal-20261123T133411Z.json"


def run_child(cmd):
    """(returncode, wall s, CPU s, peak RSS MiB) of one child process (wait4: its own usage, not all children's)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode()  # before wait4: a full pipe would block the child
    _, status, ru = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    if rc != 0:
        sys.stderr.write(err)
    return rc, time.monotonic() - t0, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


def search(args, targets, seed, extra, scorer, space, lut):
    """One `search` child; its rows with each network's true validation loss and whether it meets its target."""
    from profiler.space import Arch

    with tempfile.TemporaryDirectory() as tmp:
        cmd = [str(BIN / "search"), "--lut", str(args.lut), "--target-ms", ",".join(map(str, targets)),
               "--supernet", args.supernet, "--seed", str(seed), "--quiet", "--json", f"{tmp}/r.json", *extra]
        rc, wall, cpu, rss = run_child(cmd)
        rows = json.loads(Path(f"{tmp}/r.json").read_text())["results"] if rc == 0 else []
    for r in rows:
        arch = Arch.parse(r["arch"], space)
        r["true_val_loss"] = scorer.true_loss(arch)
        r["meets_target_predicted"] = bool(lut.predict_arch(arch) <= r["target_ms"] * (1 + 1e-9))
    cmd[cmd.index("--json") + 1] = "OUT.json"
    return {"seed": seed, "targets": targets, "rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "peak_rss_mib": round(rss), "loadavg": os.getloadavg(), "cmd": " ".join(cmd), "results": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--lut", default=str(LUT))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fractions", default="0.1,0.5,0.9", help="targets at these fractions of the LUT's range")
    ap.add_argument("--reference-steps", type=int, default=0, help="also run --oracle fixed with this many steps")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/bench_oracle.json"))
    args = ap.parse_args(argv)
    import torch

    from profiler.files import atomic_write_json
    from profiler.lut import Lut
    from search.checkpoint import load_checkpoint
    from search.oracle import SupernetOracle

    torch.set_num_threads(1)
    net, meta = load_checkpoint(args.supernet)
    tr = meta.get("train", {})
    lut = Lut.load(args.lut)
    lat = lut.latency_model()
    lo, hi = lat.min_value(), lat.max_value()
    targets = [round(lo + (hi - lo) * f, 2) for f in map(float, args.fractions.split(","))]
    seeds = [int(s) for s in args.seeds.split(",")]
    res = {"supernet": args.supernet, "train": tr, "lut": str(args.lut), "targets": targets,
           "loadavg_start": os.getloadavg(), "affinity": sorted(os.sched_getaffinity(0)),
           "omp_num_threads": os.environ.get("OMP_NUM_THREADS", f"unset (torch's default: {os.cpu_count()} cores)"),
           "searches": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:  # 1. one training epoch with the checkpoint's settings
        cmd = [str(BIN / "search"), "train-supernet", "--out", f"{tmp}/e1.pt", "--epochs", "1", "--quiet",
               "--resolution", str(net.settings.resolution), "--width", str(net.settings.width),
               "--batch-size", str(tr.get("batch_size", 256)), "--data", str(tr.get("data", "digits"))]
        rc, wall, cpu, rss = run_child(cmd)
    res["train_epoch"] = {"rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mib": round(rss),
                          "cmd": " ".join(cmd).replace(tmp, "TMP")}
    print("train epoch", res["train_epoch"], flush=True)
    atomic_write_json(out, res, overwrite=True)

    scorer = SupernetOracle(net, tr.get("data", "digits"))
    runs = [("default", seed, targets, []) for seed in seeds]
    runs += [("default-single", seeds[0], [t], []) for t in targets]
    if args.reference_steps:
        runs += [("fixed", seed, targets, ["--oracle", "fixed", "--steps", str(args.reference_steps)]) for seed in seeds]
    for kind, seed, ts, extra in runs:  # 2., 3.
        row = dict(search(args, ts, seed, extra, scorer, lut.space, lat), kind=kind)
        res["searches"].append(row)
        print(kind, seed, row["rc"], row["wall_s"], row["cpu_s"], row["peak_rss_mib"],
              [(r["target_ms"], r["search_s"], round(r["true_val_loss"], 5)) for r in row["results"]], flush=True)
        atomic_write_json(out, res, overwrite=True)
    print(json.dumps(summary(res), indent=1))
    res["summary"] = summary(res)
    atomic_write_json(out, res, overwrite=True)
    return 0


def summary(res: dict) -> dict:
    """Per-target wall against the epoch, and the true losses of default vs fixed by (seed, target)."""
    epoch = res["train_epoch"]["wall_s"]
    out = {"epoch_wall_s": epoch, "epoch_cpu_s": res["train_epoch"]["cpu_s"]}
    for kind in ("default", "default-single", "fixed"):
        rows = [s for s in res["searches"] if s["kind"] == kind and s["rc"] == 0]
        if not rows:
            continue
        per_target = [s["wall_s"] / len(s["targets"]) for s in rows]
        out[kind] = {"max_wall_per_target_s": max(per_target), "max_wall_per_target_epochs": max(per_target) / epoch,
                     "max_cpu_per_target_s": max(s["cpu_s"] / len(s["targets"]) for s in rows),
                     "max_peak_rss_mib": max(s["peak_rss_mib"] for s in rows),
                     "all_meet_target_predicted": all(r["meets_target_predicted"] for s in rows for r in s["results"]),
                     "loss": {f"{s['seed']}@{r['target_ms']}": r["true_val_loss"] for s in rows for r in s["results"]}}
    if "default" in out and "fixed" in out:
        pairs = [(v, out["fixed"]["loss"][k]) for k, v in out["default"]["loss"].items() if k in out["fixed"]["loss"]]
        out["ratio_default_to_fixed"] = {"mean_of_losses": sum(a for a, _ in pairs) / sum(b for _, b in pairs),
                                         "worst": max(a / b for a, b in pairs), "best": min(a / b for a, b in pairs),
                                         "within_1pct_or_better": sum(a <= 1.01 * b for a, b in pairs),
                                         "pairs": len(pairs)}
    return out


if __name__ == "__main__":
    sys.exit(main())
