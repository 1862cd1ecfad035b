"""Searched architectures vs random ones of equal predicted latency: does the search buy accuracy?

For targets spread over the feasible range of the newest calibrated local LUT, BCSFW searches with the frozen
multi-path supernet's validation loss as objective (as ``search --supernet`` does). For each found architecture,
random architectures of the space whose predicted latency lies within ±``--tol`` of the found one's (rejection
sampling from uniform draws, then from draws biased toward the needed depth) are its controls. Every architecture
is then trained alone from scratch (same recipe and seeds for all) and scored on the validation split.

The search objective sees the first 256 validation images, so accuracy is reported twice: on the whole validation
split (360 images, what the search optimised, biased toward the searched archs) and on the 104 images the search
never saw (unbiased, but coarse: one image is 0.96 %).

    nice -n 19 .venv/bin/python benchmarks/bench_searched_vs_random.py [--quick] [--supernet CKPT]

Writes benchmarks/out/bench_searched_vs_random.json.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import save_result  # noqa: E402

from profiler.lut import Lut, latest  # noqa: E402
from profiler.model import LinearResource  # noqa: E402
from profiler.space import HARDCORE, random_arch  # noqa: E402
from search.data import load_data  # noqa: E402
from search.problem import solve  # noqa: E402
from search.checkpoint import load_checkpoint  # noqa: E402
from search.supernet import make_objective  # noqa: E402
from search.train import train_subnet, train_supernet, val_metrics  # noqa: E402

SEARCH_BATCH = 256


def controls(model: LinearResource, ms: float, tol: float, n: int, rng, max_draws: int = 200_000):
    """n random architectures with predicted latency within ±tol of ms; depth probabilities adapted if rare."""
    found, draws = [], 0
    depth_probs = None
    while len(found) < n and draws < max_draws:
        a = random_arch(rng, depth_probs=depth_probs)
        draws += 1
        p = model.predict_arch(a)
        if abs(p - ms) <= tol * ms and str(a) not in {str(f) for f in found}:
            found.append(a)
        if draws % 2000 == 0 and len(found) < n:  # rare latency: lean the depth toward what the target needs
            lo, hi = model.min_value(), model.max_value()
            f = (ms - lo) / (hi - lo)
            k = len(HARDCORE.depths)
            w = np.exp(np.linspace(-1, 1, k) * 4 * (f - 0.5))
            depth_probs = list(w / w.sum())
    return found, draws


def split_metrics(net, arch, ds):
    """(accuracy on all val, accuracy on the val images the search did not see)."""
    acc_all, _ = val_metrics(net, arch, ds)
    unseen = type(ds)(**{**ds.__dict__, "x_val": ds.x_val[SEARCH_BATCH:], "y_val": ds.y_val[SEARCH_BATCH:]})
    acc_unseen, _ = val_metrics(net, arch, unseen)
    return acc_all, acc_unseen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="2 targets, 2 controls, short training")
    p.add_argument("--supernet", help="reuse this multipath checkpoint instead of training one")
    p.add_argument("--tol", type=float, default=0.02, help="relative latency tolerance of the controls")
    p.add_argument("--out", default=str(Path(__file__).parent / "out" / "bench_searched_vs_random.json"))
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    q = args.quick
    cfg = dict(resolution=32, width=0.5, batch_size=256, lr=0.1, supernet_epochs=16 if q else 30,
               subnet_epochs=12 if q else 20, n_targets=2 if q else 4, n_controls=2 if q else 3,
               seeds=[0] if q else [0, 1], steps=150, tol=args.tol)
    path = latest(Path("luts"), "local", HARDCORE, calibrated=True)
    lut = Lut.load(path)
    model = lut.latency_model()
    lo, hi = model.min_value(), model.max_value()
    targets = [lo + (hi - lo) * f for f in np.linspace(0.15, 0.85, cfg["n_targets"])]
    ds = load_data("digits", cfg["resolution"])
    common = dict(resolution=cfg["resolution"], width=cfg["width"], batch_size=cfg["batch_size"], lr=cfg["lr"])
    result = {"settings": cfg, "lut": str(path), "rows": []}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.supernet
        if ckpt is None:
            t0 = time.perf_counter()
            ckpt = train_supernet(Path(tmp) / "multipath.pt", ds, epochs=cfg["supernet_epochs"], mode="multipath",
                                  progress=True, seed=0, **common)
            result["supernet_train_s"] = time.perf_counter() - t0
        net, _ = load_checkpoint(ckpt)
        xb, yb = next(iter(ds.batches("val", batch_size=SEARCH_BATCH, shuffle=False)))
        objective = make_objective(net, (xb, yb))
        rng = np.random.default_rng(0)
        for t in targets:
            t0 = time.perf_counter()
            r = solve(model, t, objective, algo="bcsfw", steps=cfg["steps"], seed=0)
            search_s = time.perf_counter() - t0
            ms = model.predict_arch(r.arch)
            ctrl, draws = controls(model, ms, cfg["tol"], cfg["n_controls"], rng)
            row = {"target_ms": t, "search_s": search_s, "draws": draws, "archs": []}
            for kind, a in [("searched", r.arch)] + [("random", c) for c in ctrl]:
                one_shot = val_metrics(net, a, ds)[0]
                alone_all, alone_unseen = [], []
                for seed in cfg["seeds"]:
                    sub, _ = train_subnet(a, ds, epochs=cfg["subnet_epochs"], seed=seed, progress=False, **common)
                    acc_all, acc_unseen = split_metrics(sub, a, ds)
                    alone_all.append(acc_all)
                    alone_unseen.append(acc_unseen)
                row["archs"].append({"kind": kind, "arch": str(a), "predicted_ms": model.predict_arch(a),
                                     "one_shot_acc": one_shot, "alone_acc": float(np.mean(alone_all)),
                                     "alone_acc_unseen": float(np.mean(alone_unseen)),
                                     "alone_acc_seeds": alone_all})
                print(f"target {t:.2f} ms {kind:>8}: {model.predict_arch(a):.3f} ms, one-shot {one_shot:.3f}, "
                      f"alone {np.mean(alone_all):.4f} (unseen {np.mean(alone_unseen):.4f})", file=sys.stderr)
            result["rows"].append(row)
    result["total_s"] = time.perf_counter() - t_all

    print(f"\n{'target':>7} {'kind':>8} {'pred ms':>8} {'one-shot':>8} {'alone':>7} {'unseen':>7}")
    diffs = {"one_shot_acc": [], "alone_acc": [], "alone_acc_unseen": []}
    for row in result["rows"]:
        s, rand = row["archs"][0], row["archs"][1:]
        for a in row["archs"]:
            print(f"{row['target_ms']:7.2f} {a['kind']:>8} {a['predicted_ms']:8.3f} {a['one_shot_acc']:8.3f} "
                  f"{a['alone_acc']:7.4f} {a['alone_acc_unseen']:7.4f}")
        for k in diffs:
            if rand:
                diffs[k].append(s[k] - float(np.mean([a[k] for a in rand])))
    result["searched_minus_random"] = {k: float(np.mean(v)) if v else None for k, v in diffs.items()}
    for k, v in result["searched_minus_random"].items():
        print(f"searched − mean random, {k:>17}: {v * 100:+.2f} points" if v is not None else f"{k}: no controls")
    print(f"total {result['total_s']:.0f} s")
    return save_result(args.out, result)


if __name__ == "__main__":
    sys.exit(main())
