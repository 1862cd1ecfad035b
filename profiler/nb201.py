"""The NAS-Bench-201 cell space as data: ops, edges, the arch-string grammar, α encoding and enumeration.

Dong & Yang, "NAS-Bench-201: Extending the Scope of Reproducible Neural Architecture Search", ICLR 2020. A cell is a
DAG of 4 nodes; each of the 6 edges j -> i (j < i) carries one of 5 ops; node i is the sum of its incoming edges.
The same cell is repeated 5 times in each of 3 stages (16/32/64 channels at 32/16/8 px for CIFAR), with a residual
reduction block (a ResNet basic block with stride 2) between stages, a 3x3 stem conv -> 16 with BN, and a
BN-ReLU-global pool-linear head. 5^6 = 15,625 architectures; α only (no depth choice).

Arch strings are NAS-Bench-201's own format, nodes separated by ``+``, each edge ``op~source``::

    |nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|

Edge order (α's first axis) is the order edges appear in that string: 0->1, 0->2, 1->2, 0->3, 1->3, 2->3. The index
of an architecture in ``all_archs()`` is base-5 over the edges in that order (edge 0 most significant) with ops in
``OPS`` order; it is not NAS-Bench-201's own index (that one follows its benchmark file).

Profiling entries (the unique op/shape pieces a LUT measures) are keyed by short strings such as
``nb201_nor_conv_3x3_c16r32``; see ``profile_entries``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import List, Sequence, Tuple

import numpy as np

# Bump when the torch implementation (profiler/nb201_torch.py) changes in a way that changes cost.
IMPL_VERSION = 1

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NONE, SKIP, CONV1, CONV3, POOL = range(5)
EDGES = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))  # (source node, target node), α order
N_NODES = 4
N_EDGES, N_OPS = len(EDGES), len(OPS)


@dataclass(frozen=True)
class Nb201Space:
    """NAS-Bench-201's macro skeleton around the searchable cell (CIFAR defaults)."""

    name: str = "nb201"
    resolution: int = 32
    channels: Tuple[int, ...] = (16, 32, 64)  # per stage; resolution halves at each reduction block
    cells_per_stage: int = 5
    classes: int = 10
    ops: Tuple[str, ...] = OPS
    edges: Tuple[Tuple[int, int], ...] = EDGES
    impl_version: int = IMPL_VERSION

    @property
    def n_stages(self) -> int:
        return len(self.channels)

    def stage_shapes(self) -> List[Tuple[int, int]]:
        """(channels, resolution) of each stage's cells."""
        return [(c, self.resolution >> s) for s, c in enumerate(self.channels)]

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.loads(json.dumps(d))

    def profile_entries(self) -> List[Tuple[str, "Piece", None]]:
        """What a full LUT of this space measures (``profiler.runner.job_entries``)."""
        return profile_entries(self)

    @property
    def hash(self) -> str:
        """Content hash of the spec: LUTs record it and loaders compare it."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


NB201 = Nb201Space()


@dataclass(frozen=True)
class CellArch:
    """One NB201 architecture: the op index (``OPS`` order) on each of the 6 edges (``EDGES`` order)."""

    ops: Tuple[int, ...]
    space: Nb201Space = field(default=NB201, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.ops) != N_EDGES:
            raise ValueError(f"an NB201 cell has {N_EDGES} edges; got {len(self.ops)} ops")
        for o in self.ops:
            if not 0 <= int(o) < N_OPS:
                raise ValueError(f"op index {o} out of range 0..{N_OPS - 1}")
        object.__setattr__(self, "ops", tuple(int(o) for o in self.ops))

    def __str__(self) -> str:
        nodes = []
        for i in range(1, N_NODES):
            nodes.append("|" + "|".join(f"{OPS[self.ops[e]]}~{j}" for e, (j, t) in enumerate(EDGES) if t == i) + "|")
        return "+".join(nodes)

    @classmethod
    def parse(cls, s: str, space: Nb201Space = NB201) -> "CellArch":
        """Parse NB201's arch string; ``CellArch.parse(str(a)) == a`` for every architecture."""
        parts = s.strip().split("+")
        if len(parts) != N_NODES - 1:
            raise ValueError(f"arch string {s!r} has {len(parts)} nodes; NB201 cells have {N_NODES - 1} "
                             "('|op~0|+|op~0|op~1|+|op~0|op~1|op~2|')")
        ops = [None] * N_EDGES
        for i, part in enumerate(parts, start=1):
            if not (part.startswith("|") and part.endswith("|")):
                raise ValueError(f"node {i} of {s!r} is {part!r}; expected '|op~j|...|'")
            toks = part[1:-1].split("|")
            if len(toks) != i:
                raise ValueError(f"node {i} of {s!r} has {len(toks)} inputs; expected {i}")
            for tok in toks:
                op, sep, src = tok.partition("~")
                if not sep or not src.isdigit():
                    raise ValueError(f"unknown edge token {tok!r} in {s!r}; expected 'op~source'")
                if op not in OPS:
                    raise ValueError(f"unknown op {op!r} in {s!r}; expected one of {', '.join(OPS)}")
                if (int(src), i) not in EDGES:
                    raise ValueError(f"edge {tok!r} of node {i} in {s!r} has no source node {src}")
                e = EDGES.index((int(src), i))
                if ops[e] is not None:
                    raise ValueError(f"edge {src}->{i} appears twice in {s!r}")
                ops[e] = OPS.index(op)
        return cls(tuple(ops), space)

    @property
    def index(self) -> int:
        """Position in ``all_archs()`` (base 5 over the edges, edge 0 most significant)."""
        idx = 0
        for o in self.ops:
            idx = idx * N_OPS + o
        return idx

    @classmethod
    def from_index(cls, idx: int, space: Nb201Space = NB201) -> "CellArch":
        if not 0 <= idx < N_OPS ** N_EDGES:
            raise ValueError(f"NB201 index {idx} out of range 0..{N_OPS ** N_EDGES - 1}")
        return cls(tuple(int(d) for d in np.unravel_index(idx, (N_OPS,) * N_EDGES)), space)

    def alpha(self) -> np.ndarray:
        """α, shape (6 edges, 5 ops), one-hot."""
        a = np.zeros((N_EDGES, N_OPS))
        a[np.arange(N_EDGES), self.ops] = 1.0
        return a

    def one_hot(self) -> Tuple[np.ndarray, np.ndarray]:
        """(α (6, 5), β of shape (0, 1)): the (α, β) pair searchers pass around; the cell space has no depth choice
        (zero β groups of one option, so per-group operations on β need no special case)."""
        return self.alpha(), np.zeros((0, 1))

    # used by the profiling path (profiler/runner.py export_entry) to export the whole network
    def input_shape(self, batch: int = 1) -> Tuple[int, int, int, int]:
        return (batch, 3, self.space.resolution, self.space.resolution)

    @property
    def key(self) -> str:
        return "net:" + str(self)


def all_op_codes() -> np.ndarray:
    """Every architecture's ops, shape (15625, 6), row i = ``CellArch.from_index(i).ops``."""
    grids = np.meshgrid(*[np.arange(N_OPS)] * N_EDGES, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def all_archs(space: Nb201Space = NB201) -> List[CellArch]:
    return [CellArch(tuple(r), space) for r in all_op_codes()]


def codes_of(archs: Sequence) -> np.ndarray:
    """Op codes (n, 6) from CellArch objects or arch strings."""
    return np.array([(a if isinstance(a, CellArch) else CellArch.parse(a)).ops for a in archs], dtype=int)


def random_archs(rng, n: int, space: Nb201Space = NB201) -> List[CellArch]:
    return [CellArch(tuple(r), space) for r in rng.integers(0, N_OPS, size=(n, N_EDGES))]


# --- graph structure: which edges compute something that reaches the output --------------------------------------
def live_edges(codes: np.ndarray) -> np.ndarray:
    """Boolean (n, 6): the edge is not 'none', its source is reachable from the input and the output is reachable
    from its target, through non-'none' edges. Other edges compute nothing the cell's output depends on (a runtime
    may still run them)."""
    codes = np.asarray(codes)
    on = codes != NONE
    reach = np.zeros(codes.shape[:-1] + (N_NODES,), bool)  # from node 0
    reach[..., 0] = True
    for e, (j, i) in enumerate(EDGES):  # EDGES is in topological order of targets
        reach[..., i] |= reach[..., j] & on[..., e]
    coreach = np.zeros_like(reach)  # to node 3
    coreach[..., N_NODES - 1] = True
    for e, (j, i) in reversed(list(enumerate(EDGES))):
        coreach[..., j] |= coreach[..., i] & on[..., e]
    src = np.array([j for j, _ in EDGES])
    dst = np.array([i for _, i in EDGES])
    return on & reach[..., src] & coreach[..., dst]


def connected(codes: np.ndarray) -> np.ndarray:
    """Boolean (n,): some path of non-'none' edges links the cell's input to its output."""
    return live_edges(codes).any(-1)


# --- profiling entries ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Piece:
    """One unique piece a NB201 LUT measures, at one stage's shape.

    kind: an op name of ``OPS`` (cell edge), "add" (one node-sum addition), "zero" (a node with no input, NB201's
    Zero: x * 0, timed after a 1x1 conv as in a cell), "relu" (a ReLU that runs on its own: a 1x1 conv whose input
    is also read raw, timed with that conv), "reduce", "stem" or "head". ``reps``
    copies in a chain (ops and adds): a model run alone pays one runtime call's cost (input/output handling) that the
    same piece inside a network does not, so cell pieces are timed as chains of ``reps`` and the identity model
    (``skip_connect``, reps 1: nothing but that call cost) is taken off; see ``profiler.nb201_model.piece_table``.
    """

    kind: str
    c: int  # input channels (stem: 3)
    r: int  # input resolution
    reps: int = 1
    space: Nb201Space = field(default=NB201, compare=False, repr=False)

    def __str__(self) -> str:
        return f"nb201_{self.kind}_c{self.c}r{self.r}" + (f"_x{self.reps}" if self.reps > 1 else "")

    def input_shape(self, batch: int = 1) -> Tuple[int, ...]:
        return (batch, self.c, self.r, self.r)



CHAIN = 8  # copies of a cell piece in its timed chain
SHORT = 2  # copies in the short chain: (t(CHAIN) - t(SHORT)) / (CHAIN - SHORT) is one copy inside a network
CHAINED = ("nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "add", "zero", "relu")


def profile_pieces(space: Nb201Space = NB201) -> List[Piece]:
    """Every piece a NB201 LUT needs: per stage the call cost (identity), each timed op and the node sum as chains;
    the stem, the two reduction blocks and the head."""
    out = [Piece("stem", 3, space.resolution, space=space)]
    shapes = space.stage_shapes()
    for s, (c, r) in enumerate(shapes):
        out.append(Piece("skip_connect", c, r, space=space))
        out += [Piece(kind, c, r, n, space) for kind in CHAINED for n in (SHORT, CHAIN)]
        if s + 1 < len(shapes):
            out.append(Piece("reduce", c, r, space=space))
    c, r = shapes[-1]
    out.append(Piece("head", c, r, space=space))
    return out


CALIBRATION_SEED = 201  # draws the networks that set a LUT's level; validate draws its own with --seed (default 0)
N_CALIBRATION = 8
N_ZERO_CALIBRATION = 4  # more, whose node 1 is a zero the output reads: they set the zero nodes' own factor


def zero_calibration_archs(space: Nb201Space = NB201) -> List[CellArch]:
    """Calibration networks with a zero node: edge 0->1 'none' (node 1 has no input: a runtime x * 0) and edge
    1->3 an op (the output reads it), the other four edges at random. A zero node in a network costs 1.4-1.8x what
    its chained piece reads (docs/nb201.md), so its factor is fitted apart."""
    rng = np.random.default_rng(CALIBRATION_SEED + 1)
    ops = rng.integers(0, N_OPS, size=(N_ZERO_CALIBRATION, N_EDGES))
    ops[:, 0] = NONE
    ops[:, 4] = rng.integers(SKIP, N_OPS, size=N_ZERO_CALIBRATION)
    return [CellArch(tuple(int(o) for o in r), space) for r in ops]


def calibration_archs(space: Nb201Space = NB201) -> List[CellArch]:
    """The whole networks a NB201 LUT also measures: the cells' op costs in a network are scaled to fit them
    (``profiler.nb201_model.piece_table``), since ops timed in chains and in a network differ by factors that move
    from run to run on a shared host. Random ones, then ``zero_calibration_archs``."""
    return (random_archs(np.random.default_rng(CALIBRATION_SEED), N_CALIBRATION, space)
            + zero_calibration_archs(space))


def calibration_key(arch: CellArch) -> str:
    return f"nb201_cal_{arch.index}"


def profile_entries(space: Nb201Space = NB201) -> List[Tuple[str, object, None]]:
    """(key, piece or network, None) triples in the form ``profiler.runner.profile(..., entries=...)`` takes: the
    pieces and the calibration networks."""
    return ([(str(p), p, None) for p in profile_pieces(space)]
            + [(calibration_key(a), a, None) for a in calibration_archs(space)])


def network_entries(archs: Sequence[CellArch]) -> List[Tuple[str, CellArch, None]]:
    return [(a.key, a, None) for a in archs]
