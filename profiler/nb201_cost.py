"""Params and multiply-accumulates of NB201 networks, for every architecture: resources searchers can bound.

Counted as profiler/nb201_torch.py builds the network (NAS-Bench-201's TinyNetwork): a ReLU-Conv-BN op on c channels
at r x r has k²c² + 2c params (conv weights, BN affine) and k²c²r² MACs; skip and 3x3 average pooling have neither
(pooling's additions are not MACs); a 'none' edge has no module. Every non-'none' edge counts, live or not: the
module is in the network whether or not the output depends on it. The stem (3x3 conv 3 -> 16, BN), the residual
reduction blocks and the head (BN, linear) are the same for every architecture. Both are additive over the edges,
so their tables are exactly fixed + αᵀΘ.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from .nb201 import CONV1, CONV3, N_EDGES, N_OPS, NB201, Nb201Space, all_op_codes, live_edges
from .nb201_model import CellLatency


def _conv(c_in: int, c_out: int, k: int, r_out: int, bn: bool = True) -> Tuple[int, int]:
    return k * k * c_in * c_out + (2 * c_out if bn else 0), k * k * c_in * c_out * r_out * r_out


def op_costs(space: Nb201Space = NB201) -> Tuple[float, np.ndarray, np.ndarray]:
    """(fixed params, fixed MACs) of the parts every network has, and per-(edge, op) tables of shape (6, 5) for
    (params, MACs) summed over every cell of the network: (fixed_params, fixed_macs, theta (2, 6, 5))."""
    theta = np.zeros((2, N_EDGES, N_OPS))
    fixed = np.array(_conv(3, space.channels[0], 3, space.resolution), float)  # stem
    shapes = space.stage_shapes()
    for s, (c, r) in enumerate(shapes):
        for o, k in ((CONV1, 1), (CONV3, 3)):
            theta[:, :, o] += space.cells_per_stage * np.array(_conv(c, c, k, r), float)[:, None]
        if s + 1 < len(shapes):  # reduction: conv 3x3 s2, conv 3x3, shortcut avg-pool then 1x1 conv (no BN)
            c2, r2 = shapes[s + 1]
            fixed += np.add.reduce([_conv(c, c2, 3, r2), _conv(c2, c2, 3, r2), _conv(c, c2, 1, r2, bn=False)], 0)
    c = space.channels[-1]
    fixed += np.array([2 * c + c * space.classes + space.classes, c * space.classes], float)  # BN, linear
    return float(fixed[0]), float(fixed[1]), theta


def _model(which: int, name: str, unit: str, space: Nb201Space, live: bool = False) -> CellLatency:
    """The fixed parts and every edge's op (``live``: only the ops on live edges) of params or MACs."""
    f_params, f_macs, theta = op_costs(space)
    codes = all_op_codes()
    per_edge = theta[which][np.arange(N_EDGES), codes]
    table = (f_params, f_macs)[which] + (per_edge * live_edges(codes) if live else per_edge).sum(1)
    return CellLatency(name, unit, table, space, {"source": "counted" + (" on live edges" if live else "")
                                                  + " (profiler/nb201_cost.py)"})


def params_model(space: Nb201Space = NB201) -> CellLatency:
    return _model(0, "params", "", space)


def flops_model(space: Nb201Space = NB201) -> CellLatency:
    return _model(1, "flops", "MAC", space)


def live_flops_model(space: Nb201Space = NB201) -> CellLatency:
    """MACs the output depends on: the fixed parts and the ops on live edges (``nb201.live_edges``). An op whose
    result never reaches the output counts nothing (a runtime may drop it: the Pi 4 measures such cells at 0.011 ms),
    so a cell without an input-to-output path has the fixed parts only. ``search``'s capacity proxy on the cell space:
    counting every module instead made it pick a disconnected cell of 114 M MACs predicted at 0.012 ms."""
    return _model(1, "live flops", "MAC", space, live=True)
