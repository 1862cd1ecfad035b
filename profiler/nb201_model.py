"""The latency model of the NB201 cell space: any table over the 15,625 architectures, relaxed multilinearly.

A NB201 architecture is one op per edge, α ∈ (Δ⁵)⁶. The model holds the predicted latency L(a) of every discrete
architecture a (built from a measured LUT's pieces, or from fitted feature weights) and evaluates a relaxed α by the
multilinear extension::

    LAT(α) = Σ_a L(a) Π_e α_{e, a_e}

the expected latency when each edge draws its op from α_e independently — HardCoRe-NAS eq. (3)'s reading of a
relaxed α. When L is additive, L(a) = fixed + Σ_e θ_{e,a_e}, this is exactly fixed + αᵀΘ; richer terms (edge-pair
interactions, which edges are live, a disconnected cell) stay exact at one-hot α, and LAT stays linear in each edge's
α_e with the others fixed (multilinear), so block-coordinate Frank-Wolfe steps remain linear programs.

Feature kinds for fitted tables (``features``): ``op`` one-hot (edge, op) — αᵀΘ; ``live`` the op of each edge that
lies on an input-to-output path of non-'none' edges (dead edges as 'none'); ``used`` the same for the edges whose
target reaches the output (``used_edges``: what a runtime that drops unused values still computes); ``pair``
products of two edges' one-hots; ``disconnected``: the networks whose cell has no such path get a model of their own
(bias and op one-hot) and every other term is zero for them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .nb201_ops import all_cell_relus, all_distinct_pools, node_sums, used_edges, zero_nodes
from .nb201 import (CHAIN, CONV1, CONV3, EDGES, N_EDGES, N_NODES, N_OPS, NB201, NONE, OPS, POOL, SHORT, SKIP, CellArch,
                    Nb201Space, all_op_codes, calibration_archs, calibration_key, live_edges)

N_ARCHS = N_OPS ** N_EDGES
FEATURE_KINDS = ("op", "live", "used", "disconnected", "pair")
_LETTERS = "abcdef"


def _one_hot(codes: np.ndarray) -> np.ndarray:
    x = np.zeros((len(codes), N_EDGES * N_OPS))
    x[np.arange(len(codes))[:, None], np.arange(N_EDGES) * N_OPS + codes] = 1.0
    return x


def features(codes: np.ndarray, kinds: Sequence[str]) -> Tuple[np.ndarray, List[str]]:
    """Design matrix (n, k) for op codes (n, 6), with a leading bias column, and the column names."""
    codes = np.asarray(codes, dtype=int)
    unknown = [k for k in kinds if k not in FEATURE_KINDS]
    if unknown:
        raise ValueError(f"unknown feature kind {unknown[0]!r}; expected some of {', '.join(FEATURE_KINDS)}")
    names = [f"e{e}:{OPS[o]}" for e in range(N_EDGES) for o in range(N_OPS)]
    cols, out = [np.ones((len(codes), 1))], ["bias"]
    oh = _one_hot(codes)
    if "op" in kinds:
        cols.append(oh)
        out += [f"op:{n}" for n in names]
    if "live" in kinds:
        live = live_edges(codes)
        cols.append(_one_hot(np.where(live, codes, NONE)))
        out += [f"live:{n}" for n in names]
    if "used" in kinds:
        cols.append(_one_hot(np.where(used_edges(codes), codes, NONE)))
        out += [f"used:{n}" for n in names]
    if "pair" in kinds:
        a, b = zip(*[(i, j) for i in range(oh.shape[1]) for j in range(oh.shape[1]) if i // N_OPS < j // N_OPS])
        cols.append(oh[:, list(a)] * oh[:, list(b)])
        out += [f"pair:{names[i]}|{names[j]}" for i, j in zip(a, b)]
    x = np.hstack(cols)
    if "disconnected" in kinds:
        # a cell with no input-to-output path makes the network's output independent of its input: some runtimes
        # fold it to a constant, others run it all. Such networks get their own bias and per-edge op costs.
        disc = (~live_edges(codes).any(-1)).astype(float)[:, None]
        x = np.hstack([x * (1.0 - disc), disc, disc * oh])
        out += ["disc:bias"] + [f"disc:{n}" for n in names]
    return x, out


def piece_table(cost: Mapping[str, float], space: Nb201Space = NB201) -> np.ndarray:
    """L(a) for every architecture from a measured LUT's pieces (medians, ms, by piece key).

    Network = stem + reductions + head + Σ_stages cells × (Σ_used edges op + node sums × add), over the edges
    ``used_edges`` keeps. A model run alone pays
    one runtime call's cost c₀ (the identity model's time, per stage shape) that the network pays once, at its input
    (kept with the stem), and a chain of ops pays at its ends what the same ops inside a network may not (ONNX
    Runtime's layout changes into and out of its blocked conv layout). So in context an op costs the difference of
    two chains, (t(``CHAIN`` copies) − t(``SHORT`` copies)) / (``CHAIN`` − ``SHORT``) (LUTs from before the short
    chains: (t(``CHAIN``) − c₀) / ``CHAIN``); a reduction block or the head t − c₀; a skip edge costs nothing
    but its node sum. Node sums cost the adds ``node_sums`` leaves unfolded. Pools of one tensor are one
    computation (``distinct_pools``): pooling has no weights, so two pool edges out of node j (or out of nodes that
    hold the same tensor) compute the same result, and the exporter or ONNX Runtime's common-subexpression pass
    keeps one (checked on the optimised graph). A zero node that is read (``zero_nodes``) costs its multiply and
    the layout changes around it (ONNX Runtime runs convs in a blocked layout, the multiply in
    NCHW): the zero piece's chain less its 1x1 convs and adds. A LUT from before the zero piece charges it nothing.
    The ReLUs ONNX Runtime cannot fuse into a conv (``cell_relus``: a tensor convs read that a pool, a skip or the
    zero's multiply also reads, or that no conv produced) cost the relu piece's chain less its 1x1 convs; a stage's
    first cell, whose input a conv produced, may run fewer of them than the others.
    The cells' convs, their other ops and their zero nodes are then scaled to fit the calibration networks measured
    with the pieces (``calibration_scale``; ops in a network cost a few per cent more or less than in chains, by an
    amount that moves between runs here; a zero node 1.4-1.8x its piece).
    """
    codes = all_op_codes()
    run = used_edges(codes)
    adds = node_sums(codes)
    zeros = zero_nodes(codes)
    codes = np.where(run, codes, NONE)
    pools = (codes == POOL).sum(1)
    pools_run = all_distinct_pools()
    relus = all_cell_relus()
    total = np.full(len(codes), float(cost[f"nb201_stem_c3r{space.resolution}"]))
    cells = np.zeros((3, len(codes)))  # the cells' convs, other ops and zero nodes: the calibration networks scale them
    shapes = space.stage_shapes()
    for s, (c, r) in enumerate(shapes):
        tag = f"c{c}r{r}"
        call = float(cost[f"nb201_skip_connect_{tag}"])

        def per_copy(kind: str) -> float:
            long = float(cost[f"nb201_{kind}_{tag}_x{CHAIN}"])
            short = cost.get(f"nb201_{kind}_{tag}_x{SHORT}")  # absent from LUTs before the short chains
            if short is None:
                return max((long - call) / CHAIN, 0.0)
            return max((long - float(short)) / (CHAIN - SHORT), 0.0)

        op_cost = np.zeros(N_OPS)
        for o in (CONV1, CONV3, POOL):
            op_cost[o] = per_copy(OPS[o])
        zero = 0.0
        if f"nb201_zero_{tag}_x{CHAIN}" in cost:
            zero = max(per_copy("zero") - op_cost[CONV1] - per_copy("add"), 0.0)
        relu = 0.0  # a LUT from before the relu piece charges nothing for them
        if f"nb201_relu_{tag}_x{CHAIN}" in cost:
            relu = max(per_copy("relu") - op_cost[CONV1], 0.0)
        convs = np.where((codes == CONV1) | (codes == CONV3), op_cost[codes], 0.0).sum(1)
        cells[0] += space.cells_per_stage * convs
        cells[1] += space.cells_per_stage * (op_cost[codes].sum(1) - convs - (pools - pools_run) * op_cost[POOL]
                                             + adds * per_copy("add"))
        cells[2] += space.cells_per_stage * zeros * zero
        cells[1] += (relus[:, 0] + (space.cells_per_stage - 1) * relus[:, 1]) * relu
        if s + 1 < len(shapes):
            total += float(cost[f"nb201_reduce_{tag}"]) - call
    total += float(cost[f"nb201_head_c{c}r{r}"]) - call  # c, r, call: the last stage's
    scale = calibration_scale(cost, total, cells, space)
    return total + (np.ones(3) if scale is None else scale) @ cells


def calibration_scale(cost: Mapping[str, float], fixed: np.ndarray, cells: np.ndarray,
                      space: Nb201Space = NB201) -> Optional[np.ndarray]:
    """Factors (convs, other ops, zero nodes) on the cells' (3, n) costs that fit the calibration networks measured
    with the pieces: least squares of measured − fixed parts, each factor kept within [0.5, 2.5]. The zero nodes get
    a factor of their own when calibration networks with a zero node were measured (a LUT from before them: the
    other ops' factor); one common factor when the parts cannot be told apart; None for a LUT without calibration
    networks."""
    got = [(a.index, float(cost[calibration_key(a)])) for a in calibration_archs(space) if calibration_key(a) in cost]
    if not got:
        return None
    idx, meas = np.array([i for i, _ in got]), np.array([m for _, m in got])
    y = meas - fixed[idx]
    for groups in (((0,), (1,), (2,)), ((0,), (1, 2))):
        x = np.stack([cells[list(g)][:, idx].sum(0) for g in groups], 1)
        if len(got) >= 2 * len(groups) and (x > 0).any(0).all() and np.linalg.cond(x) < 30:
            w = np.linalg.lstsq(x, y, rcond=None)[0]
            return np.clip(np.array([w[next(k for k, g in enumerate(groups) if i in g)] for i in range(3)]), 0.5, 2.5)
    tot = cells[:, idx].sum(0)
    return np.full(3, np.clip((y * tot).sum() / (tot * tot).sum() if (tot > 0).any() else 1.0, 0.5, 2.5))


@dataclass(frozen=True, eq=False)
class CellLatency:
    """A resource of NB201 architectures: L(a) for all 15,625, relaxed multilinearly (module docstring).

    Mirrors ``search.latency.LinearResource`` for searchers: ``predict``, ``predict_torch``, ``grad``,
    ``predict_arch``, ``min_value``/``max_value``, ``argmin_arch``/``argmax_arch``. β is accepted and ignored (the
    cell space has no depth choice).
    """

    name: str
    unit: str
    table: np.ndarray  # L(a), indexed by CellArch.index
    space: Nb201Space = field(default=NB201)
    info: dict = field(default_factory=dict)  # provenance: pieces or features and weights

    def __post_init__(self) -> None:
        t = np.asarray(self.table, dtype=float).reshape(-1)
        if t.shape != (N_ARCHS,) or not np.all(np.isfinite(t)):
            raise ValueError(f"table of {self.name!r} needs {N_ARCHS} finite values; got shape {t.shape}")
        t.setflags(write=False)
        object.__setattr__(self, "table", t)

    @classmethod
    def from_weights(cls, names: Sequence[str], weights: Sequence[float], kinds: Sequence[str], name: str = "latency",
                     unit: str = "ms", space: Nb201Space = NB201, info: Optional[dict] = None,
                     floor: Optional[float] = None) -> "CellLatency":
        """The table of a fitted linear model over ``features(·, kinds)``; ``names`` must match its columns.
        ``floor``: predictions below it are raised to it (a fit may extrapolate below any latency measured)."""
        x, want = features(all_op_codes(), kinds)
        if list(names) != want:
            raise ValueError(f"feature names do not match kinds {list(kinds)} (first differing: "
                             f"{next((a for a, b in zip(names, want) if a != b), len(names))!r})")
        table = x @ np.asarray(weights, float)
        return cls(name, unit, table if floor is None else np.maximum(table, floor), space, dict(info or {}))

    @classmethod
    def from_pieces(cls, cost: Mapping[str, float], name: str = "latency", unit: str = "ms",
                    space: Nb201Space = NB201) -> "CellLatency":
        return cls(name, unit, piece_table(cost, space), space, {"source": "pieces"})

    # --- discrete ----------------------------------------------------------------------------------------------------
    def predict_codes(self, codes) -> np.ndarray:
        """L for op codes (..., 6)."""
        codes = np.asarray(codes, dtype=int)
        return self.table[np.ravel_multi_index(np.moveaxis(codes, -1, 0), (N_OPS,) * N_EDGES)]

    def predict_arch(self, arch: CellArch) -> float:
        return float(self.table[arch.index])

    # --- relaxed: the multilinear extension ----------------------------------------------------------------------
    def _check(self, alpha) -> np.ndarray:
        alpha = np.asarray(alpha, dtype=float)
        if alpha.shape[-2:] != (N_EDGES, N_OPS):
            raise ValueError(f"alpha has shape {alpha.shape}; the NB201 space needs (..., {N_EDGES}, {N_OPS})")
        return alpha

    def predict(self, alpha, beta=None) -> np.ndarray:
        """LAT(α) for α (..., 6, 5); returns shape (...)."""
        alpha = self._check(alpha)
        if alpha.ndim == 2 and not np.all((alpha == 0) | (alpha == 1)):  # one relaxed α: the fast path
            return np.asarray(self.value_and_grad(alpha)[0])
        flat = alpha.reshape(-1, N_EDGES, N_OPS)
        out = np.empty(len(flat))
        hard = np.all((flat == 0) | (flat == 1), axis=(1, 2)) & np.all(flat.sum(-1) == 1, axis=1)
        if hard.any():
            out[hard] = self.predict_codes(flat[hard].argmax(-1))
        soft = np.flatnonzero(~hard)
        T = self.table.reshape((N_OPS,) * N_EDGES)
        spec = _LETTERS + "," + ",".join(f"n{c}" for c in _LETTERS) + "->n"
        for i in range(0, len(soft), 256):  # chunks keep the (n, 5^5) intermediate small
            a = flat[soft[i:i + 256]]
            out[soft[i:i + 256]] = np.einsum(spec, T, *[a[:, e] for e in range(N_EDGES)], optimize="greedy")
        return out.reshape(alpha.shape[:-2])

    def predict_torch(self, alpha, beta=None):
        """LAT(α) in torch, differentiable in α (..., 6, 5)."""
        import torch

        T = torch.tensor(self.table, dtype=alpha.dtype, device=alpha.device).reshape((N_OPS,) * N_EDGES)  # a copy
        a = alpha.reshape(-1, N_EDGES, N_OPS)
        spec = _LETTERS + "," + ",".join(f"n{c}" for c in _LETTERS) + "->n"
        return torch.einsum(spec, T, *[a[:, e] for e in range(N_EDGES)]).reshape(alpha.shape[:-2])

    def value_and_grad(self, alpha) -> Tuple[float, np.ndarray]:
        """(LAT(α), ∂LAT/∂α) for one α (6, 5), by prefix contractions: 12x faster than ``grad``'s einsums, for the
        searchers' per-step calls."""
        alpha = self._check(alpha)
        left = [self.table]  # left[k]: edges 0..k-1 contracted, the others flat (edge k slowest)
        for k in range(N_EDGES - 1):
            left.append(alpha[k] @ left[-1].reshape(N_OPS, -1))
        g = np.empty((N_EDGES, N_OPS))
        for e in range(N_EDGES):
            x = left[e]
            for k in range(N_EDGES - 1, e, -1):  # then the edges after e, last (fastest) first
                x = x.reshape(-1, N_OPS) @ alpha[k]
            g[e] = x
        return float(g[0] @ alpha[0]), g

    def grad(self, alpha, beta=None) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """(∂LAT/∂α, ∂LAT/∂β); ∂/∂α_{e,o} is LAT with edge e fixed to op o. β has no gradient (None if not given)."""
        alpha = self._check(alpha)
        g_beta = None if beta is None else np.zeros_like(np.asarray(beta, float))
        if alpha.ndim == 2:
            return self.value_and_grad(alpha)[1], g_beta
        flat = alpha.reshape(-1, N_EDGES, N_OPS)
        T = self.table.reshape((N_OPS,) * N_EDGES)
        g = np.empty_like(flat)
        for e in range(N_EDGES):
            others = [c for k, c in enumerate(_LETTERS) if k != e]
            spec = _LETTERS + "," + ",".join(f"n{c}" for c in others) + f"->n{_LETTERS[e]}"
            g[:, e] = np.einsum(spec, T, *[flat[:, k] for k in range(N_EDGES) if k != e], optimize="greedy")
        return g.reshape(alpha.shape), g_beta

    # --- extremes and an additive view --------------------------------------------------------------------------------
    def argmin_arch(self) -> CellArch:
        return CellArch.from_index(int(np.argmin(self.table)), self.space)

    def argmax_arch(self) -> CellArch:
        return CellArch.from_index(int(np.argmax(self.table)), self.space)

    def min_value(self) -> float:
        return float(self.table.min())

    def max_value(self) -> float:
        return float(self.table.max())

    def additive(self) -> Tuple[float, np.ndarray]:
        """(fixed, Θ (6, 5)): the least-squares αᵀΘ approximation of the table over all architectures, for
        searchers that need a linear model; exact when the table is additive."""
        x, _ = features(all_op_codes(), ["op"])
        w = np.linalg.lstsq(x, self.table, rcond=None)[0]
        theta = w[1:].reshape(N_EDGES, N_OPS)
        shift = theta.min(1, keepdims=True)  # the one-hot columns and the bias are collinear: min op per edge = 0
        return float(w[0] + shift.sum()), theta - shift

    def __repr__(self) -> str:
        return (f"CellLatency({self.name!r}, unit={self.unit!r}, range=[{self.min_value():g}, "
                f"{self.max_value():g}])")

