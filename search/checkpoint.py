"""Supernet checkpoints: weights, settings and the space hash, written atomically and checked on load."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Optional, Tuple

import torch

from profiler.files import atomic_file
from profiler.space import Space, get_space

from .supernet import CHECKPOINT_FORMAT, CHECKPOINT_VERSION, CheckpointError, CheckpointMismatch, Supernet, SupernetSettings


def save_checkpoint(path, supernet: Supernet, **extra) -> Path:
    """Write the weights, settings and space hash (plus ``extra``, e.g. training state) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "settings": asdict(supernet.settings),
            "space_hash": supernet.space.hash, "state_dict": supernet.state_dict(), "extra": extra}
    with atomic_file(path) as tmp:  # a crash leaves the previous epoch's file intact
        torch.save(blob, tmp)
    return path


def load_checkpoint(path, space: Optional[Space] = None) -> Tuple[Supernet, dict]:
    """Load a supernet; refuse a checkpoint whose space hash differs from ``space`` (default: the named space)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no supernet checkpoint at {str(path)!r}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a truncated or foreign file
        raise CheckpointError(f"cannot read supernet checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a lutnas supernet checkpoint")
    if blob.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{str(path)!r} has checkpoint version {blob.get('version')!r}; this lutnas reads "
                              f"version {CHECKPOINT_VERSION}")
    settings = SupernetSettings(**blob["settings"])
    if space is None:
        try:
            space = get_space(settings.space)
        except ValueError as exc:
            raise CheckpointError(f"{str(path)!r}: {exc}") from None
    if blob["space_hash"] != space.hash:
        raise CheckpointMismatch(
            f"{str(path)!r} was trained for space {settings.space!r} with hash {blob['space_hash']}, but space "
            f"{space.name!r} now hashes to {space.hash}; retrain the supernet for this space")
    net = Supernet(space, settings.resolution, settings.width, settings.classes)
    net.load_state_dict(blob["state_dict"])
    return net, blob.get("extra", {})
