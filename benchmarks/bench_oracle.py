"""Cost and quality of `search --supernet` with the stochastic oracle (issue 17), against the old fixed-batch mixture.

In one run, on one machine: the wall time of one supernet training epoch (same settings as CKPT, a fresh temporary
checkpoint), then `search --supernet CKPT` at default settings over 3 targets (10/50/90 % of the LUT's range), one
process per seed (a sweep: the oracle's cache serves the 3 targets), with each process's peak RSS (wait4); optionally
the same with `--oracle fixed --steps N` (the old full-mixture oracle on one 256-image batch; fewer steps because
it costs minutes per step-hundred). Every found network is scored on the whole validation split by one function
(``SupernetOracle.true_loss``: its single path, BN with the split's statistics), which no search saw as a whole.

    nice -n 19 .venv/bin/python benchmarks/bench_oracle.py --supernet CKPT [--seeds 0,1,2] [--reference-steps 40]

Writes benchmarks/out/bench_oracle.json (rewritten after every process).
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


def run_rss(cmd):
    """(returncode, wall s, peak RSS MiB, CPU s) of one child process (wait4: its own usage, not all children's)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode()
    if p.returncode != 0:
        sys.stderr.write(err)
    return p.returncode, time.monotonic() - t0, ru.ru_maxrss / 1024.0, ru.ru_utime + ru.ru_stime


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True)
    ap.add_argument("--lut", default=str(LUT))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fractions", default="0.1,0.5,0.9", help="targets at these fractions of the LUT's range")
    ap.add_argument("--reference-steps", type=int, default=0, help="also run the old fixed-batch mixture oracle "
                    "with this many steps (0: skip)")
    ap.add_argument("--verify-on", help="measure the found networks of the first seed on this device")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/out/bench_oracle.json"))
    args = ap.parse_args(argv)
    from profiler.lut import Lut, atomic_write_json
    from search.latency import LinearResource
    from search.oracle import SupernetOracle
    from search.checkpoint import load_checkpoint
    from profiler.space import Arch

    net, meta = load_checkpoint(args.supernet)
    tr = meta.get("train", {})
    lut = Lut.load(args.lut)
    lat = LinearResource.from_table(lut.space, lut.block_table())
    lo, hi = lat.min_value(), lat.max_value()
    targets = [round(lo + (hi - lo) * f, 2) for f in map(float, args.fractions.split(","))]
    load = os.getloadavg()
    res = {"supernet": args.supernet, "lut": str(args.lut), "targets": targets, "loadavg_start": load, "runs": []}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:  # one training epoch with the checkpoint's settings
        cmd = [str(BIN / "search"), "train-supernet", "--out", f"{tmp}/e1.pt", "--epochs", "1", "--quiet",
               "--resolution", str(net.settings.resolution), "--width", str(net.settings.width),
               "--batch-size", str(tr.get("batch_size", 256))]
        rc, wall, rss, cpu = run_rss(cmd)
        res["train_epoch"] = {"rc": rc, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mib": round(rss),
                              "cmd": " ".join(cmd)}
        print("train epoch", res["train_epoch"], flush=True)
    atomic_write_json(out, res, overwrite=True)

    scorer = SupernetOracle(net, tr.get("data", "digits"))
    kinds = [("sampled", [])] + ([("fixed", ["--oracle", "fixed", "--steps", str(args.reference_steps)])]
                                 if args.reference_steps else [])
    for kind, extra in kinds:
        for seed in map(int, args.seeds.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [str(BIN / "search"), "--lut", args.lut, "--target-ms", ",".join(map(str, targets)),
                       "--supernet", args.supernet, "--seed", str(seed), "--quiet", "--json", f"{tmp}/r.json",
                       *extra]
                if args.verify_on and seed == 0 and kind == "sampled":
                    cmd += ["--verify-on", args.verify_on]
                rc, wall, rss, cpu = run_rss(cmd)
                rows = json.loads(Path(f"{tmp}/r.json").read_text())["results"] if rc == 0 else []
            for r in rows:
                r["true_val_loss"] = scorer.true_loss(Arch.parse(r["arch"], lut.space))
            res["runs"].append({"oracle": kind, "seed": seed, "rc": rc, "wall_s": round(wall, 1),
                                "cpu_s": round(cpu, 1), "peak_rss_mib": round(rss), "loadavg": os.getloadavg(), "results": rows})
            print(kind, seed, rc, round(wall, 1), round(rss), [(r["target_ms"], r.get("search_s"),
                                                                 r.get("true_val_loss")) for r in rows], flush=True)
            atomic_write_json(out, res, overwrite=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
