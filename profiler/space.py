"""The search space as data, and the grammar for its blocks and architectures.

One place describes the HardCoRe-NAS MobileNetV3 space (Nayman et al., ICML 2021, as published in its code): the
stages, channels, strides, activations, per-block choices and depth range. profiler/ enumerates its unique blocks
from here and search/ builds its α/β tensors from here, so both always agree, and every LUT records the space's
content hash.

Block grammar, in the spirit of timm's arch strings::

    ir_k5_e6_se1_i40_o80_s2_hs@28     inverted residual: kernel, expansion, SE, in/out channels, stride, act, input res
    conv_k3_i3_o32_s2_hs@224          stem convolution
    ds_k3_i32_o16_s1_re@112           fixed depthwise-separable block
    head_i192_o960_f1280_c1000_hs@7   1x1 conv -> pool -> 1x1 -> classifier

Architecture grammar: stages joined by ``/``, a stage's chosen configs (up to its depth) joined by ``,``::

    e3_k3_se0,e6_k5_se1/e4_k5_se0,e4_k5_se0,e3_k3_se0/...
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Iterator, List, Optional, Sequence, Tuple

# Bump when a block's torch implementation changes in a way that changes its cost (e.g. SE rounding): LUTs measured
# with the old implementation then no longer match the space hash.
IMPL_VERSION = 1

ACTS = ("re", "hs")  # ReLU, hard-swish
KINDS = ("conv", "ds", "ir", "head")
# Which tokens each kind prints, in order. Parsing accepts exactly these.
_FIELDS = {
    "conv": ("k", "i", "o", "s"),
    "ds": ("k", "i", "o", "s"),
    "ir": ("k", "e", "se", "i", "o", "s"),
    "head": ("i", "o", "f", "c"),
}
_TOKEN = re.compile(r"^(se|[keiosfc])(\d+)$")


def make_divisible(v: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """Round channels to a multiple of ``divisor`` without going more than 10 % below ``v`` (MobileNet rule)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class BlockSpec:
    """One block of a network at a fixed input resolution; the LUT key is ``str(spec)``."""

    kind: str
    i: int  # input channels
    o: int  # output channels
    res: int  # input resolution (height = width), pixels
    act: str = "re"
    k: int = 0  # kernel size (conv, ds, ir)
    s: int = 1  # stride
    e: int = 0  # expansion ratio (ir)
    se: int = 0  # squeeze-excite on/off (ir)
    f: int = 0  # hidden features of the head's second 1x1
    c: int = 0  # classes (head)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown block kind {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.act not in ACTS:
            raise ValueError(f"unknown activation {self.act!r}; expected one of {', '.join(ACTS)}")

    def __str__(self) -> str:
        toks = [self.kind] + [f"{name}{getattr(self, name)}" for name in _FIELDS[self.kind]] + [self.act]
        return "_".join(toks) + f"@{self.res}"

    @classmethod
    def parse(cls, s: str) -> "BlockSpec":
        """Parse a block string; ``BlockSpec.parse(str(b)) == b`` for every block."""
        body, sep, res = s.partition("@")
        if not sep or not res.isdigit():
            raise ValueError(f"block string {s!r} lacks an '@<resolution>' suffix")
        toks = body.split("_")
        kind, rest = toks[0], toks[1:]
        if kind not in KINDS:
            raise ValueError(f"unknown block kind {kind!r} in {s!r}")
        values = {}
        act = None
        for tok in rest:
            if tok in ACTS:
                if act is not None:
                    raise ValueError(f"two activations in {s!r}")
                act = tok
                continue
            m = _TOKEN.match(tok)
            if not m or m.group(1) not in _FIELDS[kind]:
                raise ValueError(f"unknown block token {tok!r} in {s!r}")
            if m.group(1) in values:
                raise ValueError(f"repeated block token {tok!r} in {s!r}")
            values[m.group(1)] = int(m.group(2))
        missing = [name for name in _FIELDS[kind] if name not in values]
        if missing or act is None:
            what = ", ".join(missing + ([] if act else ["activation"]))
            raise ValueError(f"block string {s!r} lacks {what}")
        return cls(kind=kind, res=int(res), act=act, **values)

    # --- derived shapes -------------------------------------------------------------------------------------------
    @property
    def mid(self) -> int:
        """Expanded channels of an inverted residual."""
        return make_divisible(self.i * self.e) if self.kind == "ir" else self.i

    @property
    def se_ch(self) -> int:
        """Squeeze-excite reduced channels (ratio 0.25 of the expanded channels, divisible by 8)."""
        return make_divisible(self.mid * 0.25) if self.se else 0

    @property
    def out_res(self) -> int:
        if self.kind == "head":
            return 1
        return (self.res + self.s - 1) // self.s  # 'same' padding

    @property
    def residual(self) -> bool:
        return self.kind in ("ir", "ds") and self.s == 1 and self.i == self.o

    def input_shape(self, batch: int = 1) -> Tuple[int, int, int, int]:
        return (batch, self.i, self.res, self.res)


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
    depths: Tuple[int, ...] = (2, 3, 4)  # β; the first two blocks of a stage always exist
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
        return [self.block(s, slot, cfg) for s in range(self.n_stages) for slot in (0, 1) for cfg in self.configs]

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


HARDCORE = Space()
SPACES = {HARDCORE.name: HARDCORE}


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise ValueError(f"unknown search space {name!r}; known: {', '.join(sorted(SPACES))}") from None


@dataclass(frozen=True)
class Arch:
    """A discrete architecture: per stage, the config index (α order) of each existing block."""

    stages: Tuple[Tuple[int, ...], ...]
    space: Space = field(default=HARDCORE, compare=False, repr=False)

    def __post_init__(self) -> None:
        sp = self.space
        if len(self.stages) != sp.n_stages:
            raise ValueError(f"architecture has {len(self.stages)} stages; space {sp.name!r} has {sp.n_stages}")
        for s, blocks in enumerate(self.stages):
            if len(blocks) not in sp.depths:
                raise ValueError(f"stage {s + 1} has depth {len(blocks)}; allowed depths are {sp.depths}")
            for c in blocks:
                if not 0 <= c < len(sp.configs):
                    raise ValueError(f"stage {s + 1} has config index {c}; allowed 0..{len(sp.configs) - 1}")

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
