"""What ONNX Runtime runs of a NB201 cell, counted from its architecture: the edges it keeps, the node sums it does
not fold into a conv, the zero tensor, the distinct pools and the ReLUs it cannot fuse. Each rule is checked against
the optimised graph (``SessionOptions.optimized_model_filepath``) in tests/test_nb201.py; ``piece_table``
(profiler/nb201_model.py) charges them."""
from __future__ import annotations

import functools
from typing import List, Tuple

import numpy as np

from .nb201 import CONV1, CONV3, EDGES, N_NODES, NONE, POOL, SKIP, all_op_codes

_IN = [[e for e, (_, t) in enumerate(EDGES) if t == i] for i in range(N_NODES)]
_OUT = [[e for e, (j, _) in enumerate(EDGES) if j == i] for i in range(N_NODES)]


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
        empty = (codes[..., _IN[i]] == NONE).all(-1)
        read = True if i == N_NODES - 1 else run[..., _OUT[i]].any(-1)
        out |= empty & read
    return out.astype(int)


def folds_into_conv(as_conv, zero_skip, seen, first_conv, first_zero):
    """Whether the addition of a node's next input (``seen`` inputs summed before it) runs inside a conv (ONNX
    Runtime's conv-with-sum), for arrays of cells or one cell (numpy bools): the input is a conv's output, unless the
    sum so far is a zero node passed on by a skip; or it is the second input and the first was a conv, unless this
    one is such a zero skip (a plain-layout tensor the blocked conv cannot take as its sum)."""
    second = np.equal(seen, 1)
    return (as_conv & ~(second & first_zero)) | (second & first_conv & ~zero_skip)


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
    empty = [None] + [(codes[..., _IN[i]] == NONE).all(-1)
                      for i in range(1, N_NODES)]
    # a skip edge passes on a conv's output when its source node is one conv's output and read only by it
    ins = [run[..., _IN[i]] for i in range(N_NODES)]
    conv_in = [(run & conv)[..., _IN[i]] for i in range(N_NODES)]
    outs = [run[..., _OUT[i]].sum(-1) for i in range(N_NODES)]
    single = [None] + [(ins[i].sum(-1) == 1) & (conv_in[i].sum(-1) == 1) & (outs[i] == 1) for i in range(1, N_NODES)]
    conv = conv | np.stack([(codes[..., e] == SKIP) & single[j] if j else np.zeros(codes.shape[:-1], bool)
                            for e, (j, _) in enumerate(EDGES)], -1)
    out = np.zeros(codes.shape[:-1], int)
    for i in range(1, N_NODES):
        seen = np.zeros(codes.shape[:-1], int)  # inputs so far
        first_conv = np.zeros(codes.shape[:-1], bool)
        first_zero = np.zeros(codes.shape[:-1], bool)
        for e in _IN[i]:
            on = run[..., e]
            j = EDGES[e][0]
            zero_skip = (codes[..., e] == SKIP) & empty[j] if j else np.zeros(codes.shape[:-1], bool)
            folded = folds_into_conv(conv[..., e], zero_skip, seen, first_conv, first_zero)
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
def all_distinct_pools() -> np.ndarray:
    return distinct_pools(all_op_codes())


def _cell_relus(ops: List[int], on: List[bool], zero_read: bool) -> Tuple[int, int, int]:
    """(first, rest, zero) for one cell: see ``cell_relus``."""
    conv = [o in (CONV1, CONV3) for o in ops]
    n_in = [sum(on[e] for e in _IN[i]) for i in range(N_NODES)]
    n_out = [sum(on[e] for e in _OUT[i]) for i in range(N_NODES)]
    single = [False] + [n_in[i] == 1 and n_out[i] == 1 and any(on[e] and conv[e] for e in _IN[i])
                        for i in range(1, N_NODES)]  # one conv's output read by one edge: a skip of it is the conv
    alias, kind = list(range(N_NODES)), ["in"] + [""] * (N_NODES - 1)
    for i in range(1, N_NODES):
        ins = [e for e in _IN[i] if on[e]]
        if not ins:
            kind[i] = "zero"
        elif len(ins) == 1 and ops[ins[0]] == SKIP:  # the source's tensor
            alias[i] = alias[EDGES[ins[0]][0]]
            kind[i] = kind[alias[i]]
        elif len(ins) == 1:
            kind[i] = "conv" if conv[ins[0]] else "other"
        else:  # node_sums' folding: the last addition folded into a conv leaves a conv's output
            seen, first_conv, first_zero, folded = 0, False, False, False
            for e in ins:
                as_conv = np.bool_(conv[e] or (ops[e] == SKIP and single[EDGES[e][0]]))
                zero_skip = np.bool_(ops[e] == SKIP and kind[alias[EDGES[e][0]]] == "zero")
                folded = bool(folds_into_conv(as_conv, zero_skip, seen, first_conv, first_zero))
                if seen == 0:
                    first_conv, first_zero = as_conv, zero_skip
                seen += 1
            kind[i] = "conv" if folded else "other"

    def count(input_kind: str) -> int:
        n = 0
        for t in range(N_NODES - 1):
            if alias[t] != t or kind[t] == "zero":
                continue
            readers = [e for k in range(N_NODES - 1) if alias[k] == t for e in _OUT[k]
                       if on[e] and not (ops[e] == SKIP and alias[EDGES[e][1]] == t)]
            if not any(conv[e] for e in readers):
                continue
            raw = any(not conv[e] for e in readers) or (t == 0 and zero_read)  # the x * 0 reads the input too
            n += raw or (input_kind if t == 0 else kind[t]) != "conv"
        return n

    zero = int(any(on[e] and conv[e] for k in range(1, N_NODES - 1) if kind[k] == "zero" for e in _OUT[k]))
    rest_input = "conv" if alias[N_NODES - 1] == 0 or kind[N_NODES - 1] == "conv" else "other"
    return count("conv"), count(rest_input), zero


def cell_relus(codes: np.ndarray) -> np.ndarray:
    """(n, 3) ReLUs a cell runs on their own: (in a stage's first cell, in each other cell, on the zero tensor).

    Every conv edge is ReLU-Conv-BN, and conv edges reading one tensor share one ReLU (common subexpression). ONNX
    Runtime fuses that ReLU into the conv that produced the tensor (a conv's activation) when nothing else reads it;
    it runs on its own when a pool or skip edge (or the zero node's x * 0) also reads the tensor raw, or when an add
    or pool produced it. A cell's input comes from the previous cell's output node, a stage's first cell's from a
    conv (the stem, a reduction block), so the two differ. The zero tensor's ReLU (when a conv reads a zero node)
    is counted apart: the zero piece includes it. Checked on the optimised graphs of 200 random networks: all but 3
    whose cells compute a constant (a zero right after a conv, folded into its weights) match."""
    codes = np.asarray(codes)
    run, zeros = used_edges(codes), zero_nodes(codes)
    return np.array([_cell_relus(c, r, bool(z)) for c, r, z in zip(codes.tolist(), run.tolist(), zeros.tolist())],
                    int).reshape(len(codes), 3)


@functools.lru_cache(maxsize=1)
def all_cell_relus() -> np.ndarray:
    return cell_relus(all_op_codes())
