"""Training the one-shot supernet (multi-path, HardCoRe-NAS eqs. (4), (5)) and stand-alone sub-networks.

``train_supernet`` samples a path per sample from uniform α, β (``mode="multipath"``, the paper's scheme) or one path
per batch (``"singlepath"``, SPOS, for comparison), saves a checkpoint atomically after every epoch and continues
from the last one with ``resume=True``. ``train_subnet`` trains one architecture alone with the same recipe (the
reference of the ranking benchmark), and ``evaluate`` measures an architecture with the supernet's shared weights.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from profiler.errors import ExitStatus, WouldOverwrite
from profiler.progress import Progress
from profiler.space import HARDCORE, Arch, Space

from .data import Dataset, load_data
from .checkpoint import load_checkpoint, save_checkpoint
from .supernet import Supernet, SupernetError, frozen_bn_stats

MODES = ("multipath", "singlepath")


class TrainingInterrupted(SupernetError):
    status = ExitStatus.INTERRUPTED


@dataclass(frozen=True)
class TrainSettings:
    data: str = "digits"
    resolution: int = 32  # pixels
    width: float = 1.0  # channel multiplier
    batch_size: int = 256  # multi-path needs it: ~21 samples per config and block for BN statistics (see _bn)
    lr: float = 0.1  # peak SGD learning rate, cosine-decayed to 0 over all epochs
    weight_decay: float = 4e-5
    seed: int = 0
    mode: str = "multipath"
    # Without these the recipe was fragile: from a fresh start at lr 0.1 (5 steps an epoch on digits) 1 of 4 seeds
    # and a 2-thread rerun of a good seed diverged for a while and ended at 5x the loss (docs/BENCHMARKS.md,
    # "Supernet"). A linear warm-up over the first steps and a clipped gradient norm keep every start on course.
    warmup: float = 0.1  # fraction of all steps over which lr ramps linearly from 0 to its peak
    clip: float = 5.0  # gradient-norm clip (0 = none)


# checkpoints written before warmup and clip existed were trained without them
LEGACY = {"warmup": 0.0, "clip": 0.0}


def _optimizer(net: nn.Module, s: TrainSettings) -> torch.optim.Optimizer:
    return torch.optim.SGD(net.parameters(), lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    # One generator per (seed, epoch) for shuffling and path sampling: a resumed run draws what a straight run draws,
    # without storing RNG state in the checkpoint.
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def learning_rate(s: TrainSettings, step: int, total: int) -> float:
    """Linear warm-up over the first ``s.warmup`` of the steps, then cosine decay to 0 (at the step's start)."""
    t = step / max(total, 1)
    if t < s.warmup:
        return s.lr * (step + 1) / max(1.0, s.warmup * total)
    u = (t - s.warmup) / (1.0 - s.warmup) if s.warmup < 1 else 1.0
    return 0.5 * s.lr * (1 + math.cos(math.pi * u))


def _run_epoch(net: Supernet, ds: Dataset, s: TrainSettings, opt: torch.optim.Optimizer, epoch: int, epochs: int,
               arch: Optional[Arch], bar: Progress, done: int) -> Tuple[float, int]:
    net.train()
    g = _epoch_generator(s.seed, epoch)
    net.generator = g
    steps = max(1, len(ds.y_train) // s.batch_size)
    total_loss, n = 0.0, 0
    for i, (x, y) in enumerate(ds.batches("train", s.batch_size, generator=g)):
        for group in opt.param_groups:
            group["lr"] = learning_rate(s, epoch * steps + i, epochs * steps)
        loss = F.cross_entropy(net(x, arch=arch), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s.clip > 0:
            nn.utils.clip_grad_norm_(net.parameters(), s.clip)
        opt.step()
        total_loss += float(loss.detach()) * len(y)
        n += len(y)
        done += 1
        bar.update(done, f"epoch {epoch + 1}/{epochs} loss {total_loss / n:.3f}")
    net.generator = None
    return total_loss / max(n, 1), done


def train_supernet(out: Union[str, Path], data: Union[str, Dataset] = "digits", epochs: int = 30,
                   resolution: int = 32, batch_size: int = 256, lr: float = 0.1, seed: int = 0,
                   mode: str = "multipath", progress: bool = True, resume: bool = False, width: float = 1.0,
                   space: Space = HARDCORE, warmup: float = 0.1, clip: float = 5.0) -> Path:
    """Train the supernet and return the checkpoint path.

    Args:
        out: checkpoint file, rewritten atomically after every epoch.
        data: "digits" (built in), a .npz file or an image folder (see ``search.data.load_data``).
        epochs: total epochs (a resumed run continues up to this number).
        resolution: training resolution in pixels (the supernet's own, not the LUT's 224).
        mode: "multipath" (a path per sample, eqs. 4–5) or "singlepath" (a path per batch).
        resume: continue from ``out``'s last finished epoch; without it an existing ``out`` is refused.
        warmup, clip: linear lr warm-up over this fraction of the steps; gradient-norm clip (``TrainSettings``).
    Raises:
        WouldOverwrite, CheckpointError, CheckpointMismatch, DataError, SupernetError, TrainingInterrupted.
    """
    if mode not in MODES:
        raise SupernetError(f"unknown training mode {mode!r}; expected one of {', '.join(MODES)}")
    out = Path(out)
    if not 0.0 <= warmup < 1.0 or clip < 0:
        raise SupernetError(f"warmup {warmup} must be in [0, 1) and clip {clip} >= 0")
    settings = TrainSettings(str(getattr(data, "name", data)), resolution, width, batch_size, lr, 4e-5, seed, mode,
                             warmup, clip)
    ds = load_data(data, resolution)
    history: List[dict] = []
    start = 0
    if resume:
        net, extra = load_checkpoint(out, space)
        old = TrainSettings(**{**LEGACY, **extra.get("train", {})})
        if old != settings:
            diff = ", ".join(f"{k}={v!r} (checkpoint {getattr(old, k)!r})" for k, v in asdict(settings).items()
                             if getattr(old, k) != v)
            raise SupernetError(f"cannot resume {str(out)!r} with other settings: {diff}")
        opt = _optimizer(net, settings)
        opt.load_state_dict(extra["optimizer"])
        start, history = int(extra["epoch"]), list(extra.get("history", []))
    else:
        if out.exists():
            raise WouldOverwrite(f"{str(out)!r} exists; pass --resume to continue it or choose another --out")
        torch.manual_seed(seed)
        net = Supernet(space, resolution, width, ds.classes)
        opt = _optimizer(net, settings)
    net.mode = mode
    steps = max(1, len(ds.y_train) // batch_size)
    bar = Progress((epochs - start) * steps, label=f"supernet {mode}", enabled=progress)
    done = 0
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            loss, done = _run_epoch(net, ds, settings, opt, epoch, epochs, None, bar, done)
            history.append({"epoch": epoch + 1, "loss": loss, "seconds": time.perf_counter() - t0})
            save_checkpoint(out, net, epoch=epoch + 1, optimizer=opt.state_dict(), train=asdict(settings),
                            history=history)
    except KeyboardInterrupt:
        raise TrainingInterrupted(f"interrupted; {len(history)} finished epoch(s) are in {str(out)!r}, "
                                  f"rerun with --resume to continue") from None
    finally:
        bar.close()
    return out


def train_subnet(arch: Arch, data: Union[str, Dataset] = "digits", epochs: int = 20, resolution: int = 32,
                 batch_size: int = 256, lr: float = 0.1, seed: int = 0, progress: bool = True,
                 width: float = 1.0) -> Tuple[Supernet, float]:
    """Train one architecture alone (same recipe as the supernet) and return it with its validation accuracy.

    The network is a fresh ``Supernet`` always run with ``arch``: only that architecture's weight slices receive
    gradients, so it is exactly the stand-alone network, and ``evaluate`` measures both kinds the same way.
    """
    settings = TrainSettings("", resolution, width, batch_size, lr, 4e-5, seed, "singlepath")
    ds = load_data(data, resolution)
    torch.manual_seed(seed)
    net = Supernet(arch.space, resolution, width, ds.classes)
    opt = _optimizer(net, settings)
    steps = max(1, len(ds.y_train) // batch_size)
    bar = Progress(epochs * steps, label="subnet", enabled=progress)
    done = 0
    try:
        for epoch in range(epochs):
            _, done = _run_epoch(net, ds, settings, opt, epoch, epochs, arch, bar, done)
    finally:
        bar.close()
    return net, evaluate(net, arch, ds)


@torch.no_grad()
def val_metrics(supernet: Supernet, arch: Arch, data: Union[str, Dataset] = "digits", bn_batches: int = 8,
                batch_size: int = 256) -> Tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``arch`` on the validation split, with the supernet's shared weights.

    BatchNorm statistics are recalibrated for ``arch`` on ``bn_batches`` training batches first (as in SPOS and
    Once-for-All): the running statistics of a supernet mix every path that used a channel, which would penalise
    architectures unlike the average one. The supernet's own buffers are restored afterwards.
    """
    ds = load_data(data, supernet.settings.resolution)
    bns = [m for m in supernet.modules() if isinstance(m, nn.BatchNorm2d)]
    was_training = supernet.training
    try:
        with frozen_bn_stats(supernet):
            if bn_batches > 0:
                for m in bns:
                    m.reset_running_stats()
                supernet.train()
                g = torch.Generator().manual_seed(0)
                for t, (x, _) in enumerate(ds.batches("train", batch_size, generator=g)):
                    if t >= bn_batches:
                        break
                    for m in bns:
                        m.momentum = 1.0 / (t + 1)  # cumulative average over the calibration batches
                    supernet(x, arch=arch)
            supernet.eval()
            correct, loss, n = 0, 0.0, 0
            for x, y in ds.batches("val", batch_size, shuffle=False):
                logits = supernet(x, arch=arch)
                correct += int((logits.argmax(1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                n += len(y)
    finally:
        supernet.train(was_training)
    return correct / n, loss / n


def evaluate(supernet: Supernet, arch: Arch, data: Union[str, Dataset] = "digits", bn_batches: int = 8) -> float:
    """Validation accuracy of ``arch`` with the supernet's shared weights (BN recalibrated; see ``val_metrics``)."""
    return val_metrics(supernet, arch, data, bn_batches)[0]


# --- CLI -----------------------------------------------------------------------------------------------------------
def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="search train-supernet", description="Train the one-shot supernet of the "
                                "search space (HardCoRe-NAS multi-path sampling). The last line printed is the "
                                "checkpoint path.")
    p.add_argument("--out", required=True, metavar="CKPT", help="checkpoint file, rewritten after every epoch")
    p.add_argument("--data", default="digits", help="'digits' (built in, offline), a .npz file with arrays x and y, "
                   "or an image folder with one subfolder per class (default digits)")
    p.add_argument("--epochs", type=int, default=30, help="total epochs (default 30)")
    p.add_argument("--resolution", type=int, default=32, help="training resolution in pixels (default 32)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (default 1.0)")
    p.add_argument("--batch-size", type=int, default=256, help="batch size (default 256; multi-path needs "
                   "enough samples per config for BatchNorm)")
    p.add_argument("--lr", type=float, default=0.1, help="peak SGD learning rate (default 0.1)")
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of the steps with a linear lr warm-up "
                   "(default 0.1)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip, 0 for none (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=MODES, default="multipath", help="a path per sample (default) or per batch")
    p.add_argument("--resume", action="store_true", help="continue CKPT from its last finished epoch")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    p.add_argument("--traceback", action="store_true", help="show the full traceback on errors")
    return p


def _run_train(args) -> int:
    path = train_supernet(args.out, data=args.data, epochs=args.epochs, resolution=args.resolution,
                          batch_size=args.batch_size, lr=args.lr, seed=args.seed, mode=args.mode,
                          progress=not args.quiet, resume=args.resume, width=args.width, warmup=args.warmup,
                          clip=args.clip)
    print(path)
    return 0


def train_main(argv: Optional[List[str]] = None) -> int:
    """``search train-supernet ...``: typed errors become one line on stderr and their exit code."""
    from profiler.cli import raw_main

    return raw_main("search train-supernet", train_parser(), _run_train, argv)
