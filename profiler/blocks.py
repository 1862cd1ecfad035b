"""The grammar of one block: a frozen ``BlockSpec`` with ``parse()`` and ``__str__``, the LUT key of a block.

Block grammar, in the spirit of timm's arch strings::

    ir_k5_e6_se1_i40_o80_s2_hs@28     inverted residual: kernel, expansion, SE, in/out channels, stride, act, input res
    conv_k3_i3_o32_s2_hs@224          stem convolution
    ds_k3_i32_o16_s1_re@112           fixed depthwise-separable block
    head_i192_o960_f1280_c1000_hs@7   1x1 conv -> pool -> 1x1 -> classifier
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Tuple

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
