"""Ranking quality of the one-shot supernet: multi-path vs single-path training (HardCoRe-NAS, Nayman et al. 2021).

Trains a supernet on the built-in digits set twice — a path per sample (multipath, eqs. 4–5) and a path per batch
(singlepath, SPOS) — then, for a set of architectures spread over model size, compares the accuracy each gets with
the supernet's shared weights (BN recalibrated) against the accuracy of the same architecture trained alone.
Reports Kendall τ (paper, ImageNet: 0.95 multipath vs 0.6 singlepath), on accuracy and on validation loss (finer than
accuracy on a 360-image split), the τ between two stand-alone seeds (the noise ceiling of any τ here), and the wall
time of supernet training.

    nice -n 19 .venv/bin/python benchmarks/bench_supernet.py [--quick]

Writes benchmarks/out/bench_supernet.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import save_result  # noqa: E402

from profiler.space import HARDCORE, random_arch  # noqa: E402
from search.data import load_data  # noqa: E402
from search.checkpoint import load_checkpoint  # noqa: E402
from search.supernet import scaled_space, SupernetSettings  # noqa: E402
from search.train import train_subnet, train_supernet, val_metrics  # noqa: E402


def macs(arch, width: float, resolution: int) -> float:
    """Multiply-accumulates of the searchable blocks at the benchmark's width (a size proxy to spread archs)."""
    sp = scaled_space(HARDCORE, SupernetSettings(resolution=resolution, width=width))
    total = 0.0
    for s, blocks in enumerate(arch.stages):
        for slot, c in enumerate(blocks):
            b = sp.block(s, slot, sp.configs[c])
            total += b.out_res ** 2 * b.mid * (b.k * b.k + b.o) + b.res ** 2 * b.mid * b.i + 2 * b.mid * b.se_ch
    return total


def pick_archs(n: int, width: float, resolution: int, seed: int = 0):
    """n architectures at evenly spaced size quantiles of 400 uniform draws (a ranking needs a spread)."""
    rng = np.random.default_rng(seed)
    pool = sorted((random_arch(rng) for _ in range(400)), key=lambda a: macs(a, width, resolution))
    return [pool[int(round(q))] for q in np.linspace(0, len(pool) - 1, n)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer archs and epochs (about 2 minutes)")
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "bench_supernet.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    q = args.quick
    cfg = dict(resolution=32, width=0.5, batch_size=256, lr=0.1,
               supernet_epochs=16 if q else 30, subnet_epochs=12 if q else 20, n_archs=8 if q else 10,
               subnet_seeds=1 if q else 2)
    ds = load_data("digits", cfg["resolution"])
    archs = pick_archs(cfg["n_archs"], cfg["width"], cfg["resolution"])
    common = dict(resolution=cfg["resolution"], width=cfg["width"], batch_size=cfg["batch_size"], lr=cfg["lr"])

    result = {"settings": cfg, "archs": [str(a) for a in archs], "supernets": {}}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("multipath", "singlepath"):
            t0 = time.perf_counter()
            path = train_supernet(Path(tmp) / f"{mode}.pt", ds, epochs=cfg["supernet_epochs"], mode=mode,
                                  progress=True, seed=0, **common)
            wall = time.perf_counter() - t0
            net, extra = load_checkpoint(path)
            metrics = [val_metrics(net, a, ds) for a in archs]
            result["supernets"][mode] = {"train_s": wall, "final_train_loss": extra["history"][-1]["loss"],
                                         "acc": [m[0] for m in metrics], "loss": [m[1] for m in metrics]}
            print(f"{mode}: trained {cfg['supernet_epochs']} epochs in {wall:.1f} s", file=sys.stderr)
    alone = {"acc": [], "loss": [], "train_s": []}
    for seed in range(cfg["subnet_seeds"]):
        accs, losses = [], []
        for i, a in enumerate(archs):
            t0 = time.perf_counter()
            net, _ = train_subnet(a, ds, epochs=cfg["subnet_epochs"], seed=seed, progress=False, **common)
            acc, loss = val_metrics(net, a, ds)
            alone["train_s"].append(time.perf_counter() - t0)
            accs.append(acc)
            losses.append(loss)
            print(f"stand-alone seed {seed} arch {i + 1}/{len(archs)}: acc {acc:.3f}", file=sys.stderr)
        alone["acc"].append(accs)
        alone["loss"].append(losses)
    result["standalone"] = alone
    ref_acc = np.mean(alone["acc"], axis=0)
    ref_loss = np.mean(alone["loss"], axis=0)
    taus = {}
    for mode, r in result["supernets"].items():
        taus[mode] = {"tau_acc": kendalltau(r["acc"], ref_acc)[0], "tau_loss": kendalltau(r["loss"], ref_loss)[0]}
    if cfg["subnet_seeds"] > 1:
        taus["standalone seed 0 vs 1"] = {"tau_acc": kendalltau(alone["acc"][0], alone["acc"][1])[0],
                                         "tau_loss": kendalltau(alone["loss"][0], alone["loss"][1])[0]}
    result["kendall_tau"] = taus
    result["total_s"] = time.perf_counter() - t_all

    print(f"\n{'arch MACs':>10} {'alone acc':>9} {'multi acc':>9} {'single acc':>10}")
    for i, a in enumerate(archs):
        print(f"{macs(a, cfg['width'], cfg['resolution']) / 1e6:9.2f}M {ref_acc[i]:9.3f} "
              f"{result['supernets']['multipath']['acc'][i]:9.3f} {result['supernets']['singlepath']['acc'][i]:10.3f}")
    print()
    for name, t in taus.items():
        print(f"Kendall tau {name:>22}: accuracy {t['tau_acc']:+.2f}   val loss {t['tau_loss']:+.2f}")
    for mode, r in result["supernets"].items():
        print(f"supernet {mode:>10}: {cfg['supernet_epochs']} epochs in {r['train_s']:.1f} s")
    print(f"stand-alone: {np.mean(alone['train_s']):.1f} s per arch; total {result['total_s']:.0f} s")
    return save_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
