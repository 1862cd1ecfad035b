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

import functools
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np

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


def used_edges(codes: np.ndarray) -> np.ndarray:
    """Boolean (n, 6): non-'none' edges whose target node reaches the cell's output through non-'none' edges.

    The others produce values nothing reads, and a graph runtime drops them (ONNX Runtime does: a network whose
    node 2 feeds only a 'none' edge runs as fast as one without node 2's ops). Edges fed by an all-zero node are
    still computed (the zero is a runtime value, not a constant).
    """
    on = np.asarray(codes) != NONE
    coreach = np.zeros(on.shape[:-1] + (N_NODES,), bool)
    coreach[..., N_NODES - 1] = True
    for e, (j, i) in reversed(list(enumerate(EDGES))):
        coreach[..., j] |= coreach[..., i] & on[..., e]
    return on & coreach[..., [i for _, i in EDGES]]


def zero_nodes(codes: np.ndarray) -> np.ndarray:
    """(n,) 1 where a cell computes a zero: some node with no non-'none' input is read (the output node, or a node
    a ``used_edges`` edge leaves). Every zero node is the same runtime ``x * 0`` of the cell's input, computed once
    (common subexpression; checked on ONNX Runtime's optimised graph). Not modelled: a cell whose output is a zero
    right after a conv, where the runtime folds the multiply into the conv's weights (the all-'none' network)."""
    codes = np.asarray(codes)
    run = used_edges(codes)
    out = np.zeros(codes.shape[:-1], bool)
    for i in range(1, N_NODES):
        empty = (codes[..., [e for e, (_, t) in enumerate(EDGES) if t == i]] == NONE).all(-1)
        read = True if i == N_NODES - 1 else run[..., [e for e, (j, _) in enumerate(EDGES) if j == i]].any(-1)
        out |= empty & read
    return out.astype(int)


def node_sums(codes: np.ndarray) -> np.ndarray:
    """(n,) additions of a cell's node sums that run as adds of their own: node i sums its ``used_edges`` inputs in
    edge order, and an addition with a conv's output is folded into that conv (ONNX Runtime's conv-with-sum: the
    second operand's conv, or the first's for the first addition; a skip edge from a node that is one conv's output
    read only by that edge counts as the conv), unless the other operand is a zero node passed on by a skip edge (a
    plain-layout tensor the blocked conv cannot take as its sum). Checked on the optimised graph of 50 random
    networks: all exact."""
    codes = np.asarray(codes)
    run = used_edges(codes)
    conv = (codes == CONV1) | (codes == CONV3)
    empty = [None] + [(codes[..., [e for e, (_, t) in enumerate(EDGES) if t == i]] == NONE).all(-1)
                      for i in range(1, N_NODES)]
    # a skip edge passes on a conv's output when its source node is one conv's output and read only by it
    ins = [run[..., [e for e, (_, t) in enumerate(EDGES) if t == i]] for i in range(N_NODES)]
    conv_in = [(run & conv)[..., [e for e, (_, t) in enumerate(EDGES) if t == i]] for i in range(N_NODES)]
    outs = [run[..., [e for e, (j, _) in enumerate(EDGES) if j == i]].sum(-1) for i in range(N_NODES)]
    single = [None] + [(ins[i].sum(-1) == 1) & (conv_in[i].sum(-1) == 1) & (outs[i] == 1) for i in range(1, N_NODES)]
    conv = conv | np.stack([(codes[..., e] == SKIP) & single[j] if j else np.zeros(codes.shape[:-1], bool)
                            for e, (j, _) in enumerate(EDGES)], -1)
    out = np.zeros(codes.shape[:-1], int)
    for i in range(1, N_NODES):
        seen = np.zeros(codes.shape[:-1], int)  # inputs so far
        first_conv = np.zeros(codes.shape[:-1], bool)
        first_zero = np.zeros(codes.shape[:-1], bool)
        for e in [e for e, (_, t) in enumerate(EDGES) if t == i]:
            on = run[..., e]
            j = EDGES[e][0]
            zero_skip = (codes[..., e] == SKIP) & empty[j] if j else np.zeros(codes.shape[:-1], bool)
            folded = (conv[..., e] & ~((seen == 1) & first_zero)) | ((seen == 1) & first_conv & ~zero_skip)
            out += on & (seen >= 1) & ~folded
            first_conv |= on & (seen == 0) & conv[..., e]
            first_zero |= on & (seen == 0) & zero_skip
            seen += on
    return out


def distinct_pools(codes: np.ndarray) -> np.ndarray:
    """(n,) average pools a cell computes: pool edges whose inputs are the same tensor are one computation (common
    subexpression). A node whose only used input is a skip edge is its source's tensor; nodes whose used inputs
    are the same skips and pools of the same tensors are one tensor (no conv: convs have their own weights)."""
    codes = np.asarray(codes)
    run = used_edges(codes)
    out = np.zeros(len(codes), int)
    for n, (ops, on) in enumerate(zip(codes.tolist(), run.tolist())):
        canon = [0]  # node -> the id of its tensor
        exprs = {}
        pooled = set()
        for i in range(1, N_NODES):
            terms = []
            for e, (j, t) in enumerate(EDGES):
                if t == i and on[e]:
                    terms.append((ops[e], canon[j]) if ops[e] in (SKIP, POOL) else (ops[e], ("edge", e)))
                    if ops[e] == POOL:
                        pooled.add(canon[j])
            if len(terms) == 1 and terms[0][0] == SKIP:
                canon.append(terms[0][1])
            else:
                canon.append(exprs.setdefault(tuple(sorted(terms, key=repr)), i))
        out[n] = len(pooled)
    return out


@functools.lru_cache(maxsize=1)
def _all_distinct_pools() -> np.ndarray:
    return distinct_pools(all_op_codes())


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
    The cells' convs and their other ops are then scaled to fit the calibration networks measured with the pieces
    (``calibration_scale``; ops in a network cost a few per cent more or less than in chains, by an amount that
    moves between runs here).
    """
    codes = all_op_codes()
    run = used_edges(codes)
    adds = node_sums(codes)
    zeros = zero_nodes(codes)
    codes = np.where(run, codes, NONE)
    pools = (codes == POOL).sum(1)
    pools_run = _all_distinct_pools()
    total = np.full(len(codes), float(cost[f"nb201_stem_c3r{space.resolution}"]))
    cells = np.zeros((2, len(codes)))  # the cells' convs and their other ops, which the calibration networks scale
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
        convs = np.where((codes == CONV1) | (codes == CONV3), op_cost[codes], 0.0).sum(1)
        cells[0] += space.cells_per_stage * convs
        cells[1] += space.cells_per_stage * (op_cost[codes].sum(1) - convs - (pools - pools_run) * op_cost[POOL]
                                             + adds * per_copy("add") + zeros * zero)
        if s + 1 < len(shapes):
            total += float(cost[f"nb201_reduce_{tag}"]) - call
    total += float(cost[f"nb201_head_c{c}r{r}"]) - call  # c, r, call: the last stage's
    scale = calibration_scale(cost, total, cells, space)
    return total + (np.ones(2) if scale is None else scale) @ cells


def calibration_scale(cost: Mapping[str, float], fixed: np.ndarray, cells: np.ndarray,
                      space: Nb201Space = NB201) -> Optional[np.ndarray]:
    """Factors (convs, other ops) on the cells' costs that fit the calibration networks measured with the pieces:
    least squares of measured − fixed parts on the cells' (2, n) parts, each kept within [0.5, 2]; one common
    factor when the two parts cannot be told apart; None for a LUT without calibration networks."""
    got = [(a.index, float(cost[calibration_key(a)])) for a in calibration_archs(space) if calibration_key(a) in cost]
    if not got:
        return None
    idx, meas = np.array([i for i, _ in got]), np.array([m for _, m in got])
    x, y = cells[:, idx].T, meas - fixed[idx]
    if len(got) >= 4 and np.linalg.cond(x) < 30:
        w = np.linalg.lstsq(x, y, rcond=None)[0]
    else:
        tot = x.sum(1)
        w = np.full(2, (y * tot).sum() / (tot * tot).sum() if (tot > 0).any() else 1.0)
    return np.clip(w, 0.5, 2.0)


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

