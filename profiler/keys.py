"""Keys of measured entries (in a LUT, a journal, an agent manifest): one grammar, one parser.

    <block>                      a block of the space: the LUT's own entries (blocks.py grammar)
    pair:<block A>+<block B>     two blocks run back to back: the boundary correction (lut.py)
    net:<arch>                   a whole network (space.py's architecture grammar)
    anchor:<block>               a LUT block re-measured by ``validate`` to tell device drift from model error
    lut:<LUT key>                a LUT entry re-measured by ``validate --cycles`` beside the networks

Block and architecture strings never contain ``:``, so the prefix is unambiguous.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from .blocks import BlockSpec

PREFIXED = ("pair", "net", "anchor", "lut")


@dataclass(frozen=True)
class EntryKey:
    """A parsed entry key: ``kind`` (block, pair, net, anchor, lut) and ``body`` (the text after the prefix)."""

    kind: str
    body: str

    def __str__(self) -> str:
        return self.body if self.kind == "block" else f"{self.kind}:{self.body}"

    @classmethod
    def parse(cls, key: str) -> "EntryKey":
        prefix, sep, rest = key.partition(":")
        if not sep:
            return cls("block", key)
        if prefix not in PREFIXED:
            raise ValueError(f"unknown entry key prefix {prefix!r} in {key!r}; expected one of {', '.join(PREFIXED)}")
        return cls(prefix, rest)

    def blocks(self) -> Tuple[BlockSpec, Optional[BlockSpec]]:
        """(first block, second block or None) of a block, pair, anchor or lut key.

        Raises:
            ValueError: a net key (a network is not blocks), or a malformed block string.
        """
        if self.kind in ("block", "anchor"):
            return BlockSpec.parse(self.body), None
        if self.kind == "pair":
            a, sep, b = self.body.partition("+")
            if not sep:
                raise ValueError(f"pair key {str(self)!r} lacks '+' between its two blocks")
            return BlockSpec.parse(a), BlockSpec.parse(b)
        if self.kind == "lut":
            return EntryKey.parse(self.body).blocks()
        raise ValueError(f"{str(self)!r} names a network, not blocks")


def pair_key(a, b) -> str:
    return str(EntryKey("pair", f"{a}+{b}"))


def net_key(arch) -> str:
    return str(EntryKey("net", str(arch)))


def anchor_key(block_key: str) -> str:
    return str(EntryKey("anchor", block_key))


def lut_key(key: str) -> str:
    return str(EntryKey("lut", key))


def is_pair(key: str) -> bool:
    return EntryKey.parse(key).kind == "pair"


def boundary_key(b) -> str:
    """Tag of the tensor a block (a ``BlockSpec``) hands to the next one: channels and resolution."""
    return f"c{b.o}r{b.out_res}"
