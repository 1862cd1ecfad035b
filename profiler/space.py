"""The search space, loaded from data, and the grammar of its architectures.

One place describes the HardCoRe-NAS MobileNetV3 space (Nayman et al., ICML 2021, as published in its code): the
stages, channels, strides, activations, per-block choices and depth range. profiler/ enumerates its unique blocks
from here and search/ builds its α/β tensors from here, so both always agree, and every LUT records the space's
content hash. The space itself is declared in a data file, ``profiler/spaces/<name>.toml``; the block grammar
is in blocks.py.

Architecture grammar: stages joined by ``/``, a stage's chosen configs (up to its depth) joined by ``,``::

    e3_k3_se0,e6_k5_se1/e4_k5_se0,e4_k5_se0,e3_k3_se0/...
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from .blocks import ACTS, BlockSpec, make_divisible  # noqa: F401 (make_divisible: public here too)
from .errors import BadSpace, UnknownSpace

# Bump when a block's torch implementation changes in a way that changes its cost (e.g. SE rounding): LUTs measured
# with the old implementation then no longer match the space hash.
IMPL_VERSION = 1


@dataclass(frozen=True)
class Config:
    """One choice for a searchable block: expansion ratio, depthwise kernel, squeeze-excite."""

    e: int
    k: int
    se: int

    def __str__(self) -> str:
        return f"e{self.e}_k{self.k}_se{self.se}"

    @classmethod
    def parse(cls, s: str) -> "Config":
        m = re.fullmatch(r"e(\d+)_k(\d+)_se([01])", s)
        if not m:
            raise ValueError(f"unknown block config {s!r}; expected e.g. 'e6_k5_se1'")
        return cls(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass(frozen=True)
class Stage:
    out: int
    stride: int
    act: str


@dataclass(frozen=True)
class Space:
    """A MobileNetV3-like space: fixed stem/ds/head around searchable stages of inverted residuals."""

    name: str = "hardcore-mbv3"
    resolution: int = 224
    stem_out: int = 32
    ds_out: int = 16
    stages: Tuple[Stage, ...] = (
        Stage(24, 2, "re"), Stage(40, 2, "re"), Stage(80, 2, "hs"), Stage(112, 1, "hs"), Stage(192, 2, "hs"),
    )
    expansions: Tuple[int, ...] = (3, 4, 6)
    kernels: Tuple[int, ...] = (3, 5)
    se: Tuple[int, ...] = (0, 1)
    depths: Tuple[int, ...] = (2, 3, 4)  # β; slots below min(depths) always exist; one value: fixed depth, no β
    head_out: int = 960
    head_features: int = 1280
    classes: int = 1000
    impl_version: int = IMPL_VERSION

    # --- choices ---------------------------------------------------------------------------------------------------
    @property
    def configs(self) -> List[Config]:
        """Block configs in α order: expansion-major, then kernel, then SE."""
        return [Config(e, k, se) for e, k, se in product(self.expansions, self.kernels, self.se)]

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    # --- shapes ------------------------------------------------------------------------------------------------------
    def stage_inputs(self) -> List[Tuple[int, int]]:
        """(in channels, input resolution) of each stage's first block."""
        res = self.resolution // 2  # stem stride 2; the ds block keeps resolution
        ch = self.ds_out
        out = []
        for st in self.stages:
            out.append((ch, res))
            ch, res = st.out, (res + st.stride - 1) // st.stride
        return out

    def block(self, stage: int, slot: int, cfg: Config) -> BlockSpec:
        """The block at ``slot`` (0-based) of ``stage`` with config ``cfg``."""
        st = self.stages[stage]
        ch, res = self.stage_inputs()[stage]
        if slot == 0:
            return BlockSpec("ir", i=ch, o=st.out, res=res, act=st.act, k=cfg.k, s=st.stride, e=cfg.e, se=cfg.se)
        res2 = (res + st.stride - 1) // st.stride
        return BlockSpec("ir", i=st.out, o=st.out, res=res2, act=st.act, k=cfg.k, s=1, e=cfg.e, se=cfg.se)

    def fixed_blocks(self) -> List[BlockSpec]:
        """Stem, the fixed depthwise-separable block, and the head."""
        r = self.resolution
        last_ch = self.stages[-1].out
        last_res = self.stage_inputs()[-1][1] // self.stages[-1].stride
        return [
            BlockSpec("conv", i=3, o=self.stem_out, res=r, act="hs", k=3, s=2),
            BlockSpec("ds", i=self.stem_out, o=self.ds_out, res=r // 2, act="re", k=3, s=1),
            BlockSpec("head", i=last_ch, o=self.head_out, res=last_res, act="hs", f=self.head_features,
                      c=self.classes),
        ]

    def searchable_blocks(self) -> List[BlockSpec]:
        """The unique searchable blocks: per stage, first-block shape × configs, then the shared shape × configs."""
        slots = (0, 1) if self.max_depth > 1 else (0,)  # a stage of fixed depth 1 has no shared shape
        return [self.block(s, slot, cfg) for s in range(self.n_stages) for slot in slots for cfg in self.configs]

    def unique_blocks(self) -> List[BlockSpec]:
        return self.fixed_blocks() + self.searchable_blocks()

    # --- identity ----------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages]
        return d

    @property
    def hash(self) -> str:
        """Content hash of the spec: LUTs and checkpoints record it and loaders compare it."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --- spaces as data: profiler/spaces/<name>.toml -------------------------------------------------------------------
SPACES_DIR = Path(__file__).resolve().parent / "spaces"
# file layout: section -> key -> (Space field, type); top-level keys under ""
_LAYOUT = {
    "": {"name": ("name", str), "resolution": ("resolution", int)},
    "stem": {"out": ("stem_out", int)},
    "ds": {"out": ("ds_out", int)},
    "choices": {"expansions": ("expansions", [int]), "kernels": ("kernels", [int]), "se": ("se", [int]),
                "depths": ("depths", [int])},
    "head": {"out": ("head_out", int), "features": ("head_features", int), "classes": ("classes", int)},
}
_STAGE = {"out": int, "stride": int, "act": str}


def _typed(path: Path, key: str, value, want):
    ok = (isinstance(value, list) and value and all(type(v) is want[0] for v in value)) if isinstance(want, list) \
        else type(value) is want
    if not ok:
        what = f"a non-empty list of {want[0].__name__}" if isinstance(want, list) else want.__name__
        raise BadSpace(f"space file {path}: key {key!r} must be {what}, got {value!r}")
    return tuple(value) if isinstance(want, list) else value


def _keys(path: Path, where: str, table: dict, allowed) -> None:
    for k in table:
        if k not in allowed:
            raise BadSpace(f"space file {path}: unknown key {where + k!r}; allowed: {', '.join(sorted(allowed))}")
    for k in allowed:
        if k not in table:
            raise BadSpace(f"space file {path}: missing key {where + k!r}")


def load_space(path) -> Space:
    """Read and check a space file (``profiler/spaces/*.toml``); the result hashes as the same spec in code.

    Raises:
        BadSpace: unreadable TOML, an unknown or missing key, a value of the wrong type or out of range; the
            message names the file and the key.
    """
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise BadSpace(f"space file {path}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadSpace(f"space file {path}: not valid TOML: {exc}") from None
    top = {k: v for k, v in doc.items() if not isinstance(v, (dict, list)) or k == "stages"}
    _keys(path, "", {k: 1 for k in doc}, [k for k in _LAYOUT if k] + list(_LAYOUT[""]) + ["stages"])
    kw = {}
    for section, keys in _LAYOUT.items():
        table = top if not section else doc[section]
        if section:
            if not isinstance(table, dict):
                raise BadSpace(f"space file {path}: key {section!r} must be a table")
            _keys(path, section + ".", table, keys)
        for k, (field_name, want) in keys.items():
            kw[field_name] = _typed(path, (section + "." if section else "") + k, table[k], want)
    stages = doc["stages"]
    if not isinstance(stages, list) or not stages or not all(isinstance(s, dict) for s in stages):
        raise BadSpace(f"space file {path}: key 'stages' must be a non-empty array of tables ([[stages]])")
    kw["stages"] = []
    for i, st in enumerate(stages):
        _keys(path, f"stages[{i}].", st, _STAGE)
        vals = {k: _typed(path, f"stages[{i}].{k}", st[k], t) for k, t in _STAGE.items()}
        if vals["act"] not in ACTS:
            raise BadSpace(f"space file {path}: key 'stages[{i}].act' must be one of {', '.join(ACTS)}, "
                           f"got {vals['act']!r}")
        kw["stages"].append(Stage(**vals))
    kw["stages"] = tuple(kw["stages"])
    for key, vals in (("choices.depths", kw["depths"]), ("choices.kernels", kw["kernels"]),
                      ("choices.expansions", kw["expansions"])):
        if min(vals) < 1 or len(set(vals)) != len(vals):
            raise BadSpace(f"space file {path}: key {key!r} must hold distinct values >= 1, got {list(vals)}")
    if not set(kw["se"]) <= {0, 1}:
        raise BadSpace(f"space file {path}: key 'choices.se' must hold 0 and/or 1, got {list(kw['se'])}")
    if kw["name"] != path.stem:
        raise BadSpace(f"space file {path}: key 'name' is {kw['name']!r}; it must match the file name {path.stem!r}")
    return Space(**kw)


SPACES = {p.stem: load_space(p) for p in sorted(SPACES_DIR.glob("*.toml"))}
HARDCORE = SPACES["hardcore-mbv3"]


def get_space(name: str) -> Space:
    """The registered space called ``name`` (a file ``profiler/spaces/<name>.toml``).

    Raises:
        UnknownSpace (a LutnasError) naming the known spaces.
    """
    if name == "nb201":  # the NAS-Bench-201 cell space is declared in code (profiler/nb201.py): α only, no blocks
        from .nb201 import NB201

        return NB201
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownSpace(f"unknown search space {name!r}; known: {', '.join(sorted([*SPACES, 'nb201']))}") from None


@dataclass(frozen=True)
class Arch:
    """A discrete architecture: per stage, the config index (α order) of each existing block."""

    stages: Tuple[Tuple[int, ...], ...]
    space: Space = field(default=HARDCORE, compare=False, repr=False)

    def __post_init__(self) -> None:
        sp = self.space
        if len(self.stages) != sp.n_stages:
            raise ValueError(f"architecture has {len(self.stages)} stages; space {sp.name!r} has {sp.n_stages}")
        n = len(sp.configs)  # a property that builds the list: once, not per block (a local search makes thousands)
        for s, blocks in enumerate(self.stages):
            if len(blocks) not in sp.depths:
                raise ValueError(f"stage {s + 1} has depth {len(blocks)}; allowed depths are {sp.depths}")
            for c in blocks:
                if not 0 <= c < n:
                    raise ValueError(f"stage {s + 1} has config index {c}; allowed 0..{n - 1}")

    def __str__(self) -> str:
        cfgs = self.space.configs
        return "/".join(",".join(str(cfgs[c]) for c in blocks) for blocks in self.stages)

    @classmethod
    def parse(cls, s: str, space: Space = HARDCORE) -> "Arch":
        index = {str(c): i for i, c in enumerate(space.configs)}
        stages = []
        for part in s.strip().split("/"):
            idx = []
            for tok in part.split(","):
                tok = tok.strip()
                cfg = Config.parse(tok)
                if str(cfg) not in index:
                    raise ValueError(f"config {tok!r} in {s!r} is not in space {space.name!r}")
                idx.append(index[str(cfg)])
            stages.append(tuple(idx))
        return cls(tuple(stages), space)

    @property
    def depths(self) -> Tuple[int, ...]:
        return tuple(len(b) for b in self.stages)

    def blocks(self) -> Iterator[BlockSpec]:
        """Every block of the network in order, fixed parts included."""
        stem, ds, head = self.space.fixed_blocks()
        yield stem
        yield ds
        cfgs = self.space.configs
        for s, blocks in enumerate(self.stages):
            for slot, c in enumerate(blocks):
                yield self.space.block(s, slot, cfgs[c])
        yield head

    def one_hot(self):
        """(α, β) one-hot arrays of shapes (stages, max_depth, configs) and (stages, len(depths))."""
        import numpy as np

        sp = self.space
        alpha = np.zeros((sp.n_stages, sp.max_depth, len(sp.configs)))
        beta = np.zeros((sp.n_stages, len(sp.depths)))
        for s, blocks in enumerate(self.stages):
            for b in range(sp.max_depth):
                # Slots beyond the depth still need a distribution; their weight in eq. (3) is zero.
                alpha[s, b, blocks[min(b, len(blocks) - 1)]] = 1.0
            beta[s, sp.depths.index(len(blocks))] = 1.0
        return alpha, beta


def random_arch(rng, space: Space = HARDCORE, depth_probs: Optional[Sequence[float]] = None) -> Arch:
    """Uniformly random architecture (uniform configs and depths unless ``depth_probs`` is given)."""
    n = len(space.configs)
    stages = []
    for _ in range(space.n_stages):
        d = int(rng.choice(space.depths, p=depth_probs))
        stages.append(tuple(int(x) for x in rng.integers(0, n, size=d)))
    return Arch(tuple(stages), space)
