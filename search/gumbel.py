"""Straight-through Gumbel-softmax samples of architecture logits."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def gumbel_softmax_st(logits: torch.Tensor, tau: float, generator: Optional[torch.Generator] = None,
                      noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Straight-through Gumbel-softmax over the last axis: one-hot forward, ∂softmax((logits + g)/τ) backward.

    Args:
        noise: uniform(0, 1) draws shaped like ``logits``; drawn from ``generator`` when None.
    """
    if noise is None:
        noise = torch.rand(logits.shape, generator=generator, dtype=logits.dtype)
    g = -torch.log(-torch.log(noise.clamp(1e-10, 1.0 - 1e-7)))
    soft = F.softmax((logits + g) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype)
    return hard - soft.detach() + soft
