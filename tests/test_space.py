"""The block and architecture grammar, over every block of the space."""
import numpy as np
import pytest

from profiler.space import HARDCORE, Arch, BlockSpec, Config, random_arch

ALL_BLOCKS = HARDCORE.unique_blocks()


def test_space_has_120_searchable_blocks_and_3_fixed():
    assert len(HARDCORE.searchable_blocks()) == 120
    assert len(set(map(str, ALL_BLOCKS))) == 123


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=str)
def test_block_string_round_trips(block):
    assert BlockSpec.parse(str(block)) == block
    assert str(BlockSpec.parse(str(block))) == str(block)


def test_example_from_the_design():
    b = BlockSpec.parse("ir_k5_e6_se1_i40_o80_s2_hs@28")
    assert (b.kind, b.k, b.e, b.se, b.i, b.o, b.s, b.act, b.res) == ("ir", 5, 6, 1, 40, 80, 2, "hs", 28)
    assert b.mid == 240 and b.se_ch == 64 and b.out_res == 14 and not b.residual


@pytest.mark.parametrize("bad, msg", [
    ("ir_k5_e6_se1_i40_o80_s2_hs", "lacks an '@<resolution>'"),
    ("ir_k5_e6_x1_i40_o80_s2_hs@28", "unknown block token 'x1'"),
    ("ir_k5_e6_se1_i40_o80_s2_gelu@28", "unknown block token 'gelu'"),
    ("zz_k5@28", "unknown block kind 'zz'"),
    ("ir_k5_e6_i40_o80_s2_hs@28", "lacks se"),
    ("ir_k5_k3_e6_se1_i40_o80_s2_hs@28", "repeated block token"),
    ("head_k3_i192_o960_f1280_c1000_hs@7", "unknown block token 'k3'"),
])
def test_bad_block_strings_raise_value_error_naming_the_token(bad, msg):
    with pytest.raises(ValueError, match=msg):
        BlockSpec.parse(bad)


def test_configs_are_expansion_major_then_kernel_then_se():
    assert [str(c) for c in HARDCORE.configs[:5]] == ["e3_k3_se0", "e3_k3_se1", "e3_k5_se0", "e3_k5_se1",
                                                       "e4_k3_se0"]
    assert Config.parse("e6_k5_se1") == HARDCORE.configs[-1]


def test_architecture_round_trips_and_lists_its_blocks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a = random_arch(rng)
        assert Arch.parse(str(a)) == a
        blocks = list(a.blocks())
        assert len(blocks) == 3 + sum(a.depths)
        assert blocks[0].kind == "conv" and blocks[-1].kind == "head"
        for prev, nxt in zip(blocks, blocks[1:]):  # every block consumes what the one before produced
            assert nxt.i == prev.o and nxt.res == prev.out_res


@pytest.mark.parametrize("bad, msg", [
    ("e3_k3_se0/e3_k3_se0", "has 2 stages"),
    ("e3_k3_se0/e3_k3_se0,e3_k3_se0/e3_k3_se0,e3_k3_se0/e3_k3_se0,e3_k3_se0/e3_k3_se0,e3_k3_se0", "depth 1"),
    ("e5_k3_se0,e3_k3_se0/" * 4 + "e3_k3_se0,e3_k3_se0", "not in space"),
    ("e3_k7", "unknown block config"),
])
def test_bad_architectures_are_refused(bad, msg):
    with pytest.raises(ValueError, match=msg):
        Arch.parse(bad)


def test_space_hash_changes_with_the_spec():
    from dataclasses import replace

    assert replace(HARDCORE).hash == HARDCORE.hash and len(HARDCORE.hash) == 16  # a copy hashes the same
    assert replace(HARDCORE, expansions=(3, 6)).hash != HARDCORE.hash
