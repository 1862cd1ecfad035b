"""Spaces as data: profiler/spaces/*.toml, the loader's checks, the registry, and spaces with a fixed depth."""
import json
from pathlib import Path

import numpy as np
import pytest

from profiler.errors import BadSpace, ExitStatus, UnknownSpace
from profiler.model import block_cost, flops_model
from profiler.space import HARDCORE, SPACES, SPACES_DIR, Arch, Space, Stage, get_space, load_space, random_arch

ROOT = Path(__file__).resolve().parents[1]
GOOD = (SPACES_DIR / "hardcore-mbv3.toml").read_text()


def test_the_shipped_file_hashes_as_every_committed_lut_records():
    recorded = {json.loads(p.read_text())["space"]["hash"] for p in (ROOT / "luts").rglob("*.json")}
    assert recorded == {HARDCORE.hash} == {"3a55cc0d02757ede"}
    assert HARDCORE == Space()  # the dataclass defaults describe the same space
    assert get_space("hardcore-mbv3") is HARDCORE and set(SPACES) == {p.stem for p in SPACES_DIR.glob("*.toml")}


def test_unknown_space_names_the_known_ones():
    with pytest.raises(UnknownSpace, match=r"unknown search space 'nope'; known: hardcore-mbv3, nb201"):
        get_space("nope")


@pytest.mark.parametrize("old,new,match", [
    ("classes = 1000", "", r"missing key 'head\.classes'"),
    ("classes = 1000", "classes = 1000\ncolour = 3", r"unknown key 'head\.colour'"),
    ("out = 40", 'out = "40"', r"key 'stages\[1\]\.out' must be int, got '40'"),
    ('act = "hs"', 'act = "gelu"', r"key 'stages\[2\]\.act' must be one of re, hs, got 'gelu'"),
    ("depths = [2, 3, 4]", "depths = []", r"key 'choices\.depths' must be a non-empty list of int"),
    ("depths = [2, 3, 4]", "depths = [2, 2]", r"key 'choices\.depths' must hold distinct values >= 1"),
    ("se = [0, 1]", "se = [0, 2]", r"key 'choices\.se' must hold 0 and/or 1"),
    ('name = "hardcore-mbv3"', 'name = "other"', r"key 'name' is 'other'; it must match the file name"),
    ("[head]", "[head", r"not valid TOML"),
])
def test_a_bad_space_file_is_refused_in_one_line_naming_file_and_key(tmp_path, old, new, match):
    assert old in GOOD
    path = tmp_path / "hardcore-mbv3.toml"
    path.write_text(GOOD.replace(old, new, 1))
    with pytest.raises(BadSpace, match=match) as exc:
        load_space(path)
    msg = str(exc.value)
    assert msg.startswith(f"space file {path}: ") and "\n" not in msg
    assert exc.value.status == ExitStatus.BAD_INPUT


def test_a_copy_of_the_file_loads_to_the_same_space(tmp_path):
    path = tmp_path / "hardcore-mbv3.toml"
    path.write_text(GOOD)
    assert load_space(path).hash == HARDCORE.hash


@pytest.mark.parametrize("depths", [(1,), (3,), (2, 4)])
def test_a_space_without_a_depth_choice_works_in_the_model_and_arch(depths):
    sp = Space(name="fixed", stages=(Stage(16, 2, "re"), Stage(24, 1, "hs")), depths=depths)
    model = flops_model(sp)
    rng = np.random.default_rng(0)
    for _ in range(20):
        arch = random_arch(rng, sp)
        assert Arch.parse(str(arch), sp) == arch and len(set(arch.depths) - set(depths)) == 0
        direct = sum(block_cost(b)[1] for b in arch.blocks())
        assert model.predict_arch(arch) == pytest.approx(direct, rel=1e-12)
    alpha, beta = arch.one_hot()
    assert beta.shape == (2, len(depths))
    cost, const = model.beta_costs(alpha)
    if len(depths) == 1:  # no β: the latency does not depend on it
        assert np.all(cost == 0) and const == pytest.approx(model.predict_arch(arch))
    assert model.min_value() <= model.predict_arch(arch) <= model.max_value()
    if max(depths) == 1:
        assert all(b.s == st.stride for b, st in zip(sp.searchable_blocks()[::len(sp.configs)], sp.stages))


def test_profile_refuses_an_unknown_space_before_measuring(capsys):
    from profiler.cli import profile_main

    assert profile_main(["--space", "nope", "--device", "local", "--out", "/nonexistent/never-written"]) == 14
    err = capsys.readouterr().err.strip()
    assert err == "profile: error: unknown search space 'nope'; known: hardcore-mbv3, nb201"
