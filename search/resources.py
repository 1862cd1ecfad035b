"""Params and FLOPs of every block, computed analytically, as additive resources in the form of eq. (3).

Params count every trainable tensor of the block as profiler/nets.py builds it (conv and linear weights and biases,
BatchNorm's scale and shift). FLOPs are multiply-accumulates of convolutions and linear layers; BatchNorm folds into
the preceding convolution at inference and activations, pooling and the residual add are not counted.
"""
from __future__ import annotations

from typing import Tuple

from profiler.space import BlockSpec, Space

from .latency import LinearResource


def block_cost(b: BlockSpec) -> Tuple[int, int]:
    """(params, multiply-accumulates) of one block at batch 1."""
    hw_in, hw_out = b.res * b.res, b.out_res * b.out_res
    if b.kind == "conv":
        return b.i * b.o * b.k * b.k + 2 * b.o, b.i * b.o * b.k * b.k * hw_out
    if b.kind == "ds":
        params = b.i * b.k * b.k + 2 * b.i + b.i * b.o + 2 * b.o
        return params, b.i * b.k * b.k * hw_out + b.i * b.o * hw_out
    if b.kind == "ir":
        mid, rd = b.mid, b.se_ch
        params = b.i * mid + 2 * mid + mid * b.k * b.k + 2 * mid + mid * b.o + 2 * b.o
        macs = b.i * mid * hw_in + mid * b.k * b.k * hw_out + mid * b.o * hw_out
        if b.se:
            params += mid * rd + rd + rd * mid + mid
            macs += 2 * mid * rd
        return params, macs
    if b.kind == "head":
        params = b.i * b.o + 2 * b.o + b.o * b.f + b.f + b.f * b.c + b.c
        return params, b.i * b.o * hw_in + b.o * b.f + b.f * b.c
    raise ValueError(f"no cost formula for block kind {b.kind!r}")


def _model(space: Space, which: int, name: str, unit: str) -> LinearResource:
    table = {str(b): float(block_cost(b)[which]) for b in space.unique_blocks()}
    return LinearResource.from_table(space, table, name=name, unit=unit)


def params_model(space: Space) -> LinearResource:
    return _model(space, 0, "params", "")


def flops_model(space: Space) -> LinearResource:
    return _model(space, 1, "flops", "MAC")
