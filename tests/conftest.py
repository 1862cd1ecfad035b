"""Shared test fixtures and helpers: the synthetic latency table and objectives of the search tests, and the sshd
helpers of the SSH tests (tests/sshd.py runs the real sshd). Test modules import the plain helpers from here
(``from tests.conftest import LAT, objective``); pytest supplies the fixtures (``sshd``) by name."""
import sys
from pathlib import Path

import numpy as np
import pytest

from profiler.cli import profile_parser
from profiler.fleet import profile_fleet
from profiler.inventory import resolve_device
from profiler.lut import Lut
from profiler.model import LinearResource, block_cost, params_model
from profiler.runner import Method
from profiler.space import HARDCORE, BlockSpec
from search.exact import SeparableObjective
from tests.sshd import Sshd

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# --- search: a synthetic LUT-like latency (FLOPs plus a per-block overhead) and separable objectives ----------------
TABLE = {str(b): 0.02 + block_cost(b)[1] / 1e8 for b in HARDCORE.unique_blocks()}  # ms: ~1 GMAC/s + overhead
LAT = LinearResource.from_table(HARDCORE, TABLE)
LO, HI = LAT.min_value(), LAT.max_value()
PARAMS = params_model(HARDCORE)


def objective(seed, mu=0.0):
    """A random separable objective (its exact optimum is a MILP: search.exact); strongly convex in α with mu > 0."""
    rng = np.random.default_rng(seed)
    return SeparableObjective(HARDCORE, rng.normal(0, 1, (5, 4, 12)), rng.normal(0, 1, (5, 3)), mu=mu,
                              a0=rng.dirichlet(np.ones(12), size=(5, 4)) if mu else None)


def target(frac, res=LAT):
    """The value ``frac`` of the way from the resource's minimum over the space to its maximum."""
    lo, hi = res.min_value(), res.max_value()
    return lo + frac * (hi - lo)


# --- SSH: a real sshd on loopback and small profiling jobs ---------------------------------------------------------
TFLITE_BLOCKS = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e3_se1_i192_o192_s1_hs@7",
                 "ir_k3_e3_se0_i112_o192_s2_hs@14"]
ORT_BLOCKS = ["ir_k3_e3_se0_i192_o192_s1_hs@7", "ir_k5_e6_se1_i192_o192_s1_hs@7", "ir_k3_e4_se0_i80_o112_s1_hs@14",
              "ir_k5_e6_se1_i40_o80_s2_hs@28", "ir_k3_e6_se0_i24_o40_s2_re@56", "ir_k5_e6_se0_i16_o24_s2_re@112"]


def entries(names):
    return [(n, BlockSpec.parse(n), None) for n in names]


def fast(**kw) -> Method:
    """A loose method: these tests check plumbing and bookkeeping, not precision."""
    m = dict(warmup_n=2, warmup_s=0.05, min_n=10, target_ci=0.25, budget_s=0.15, bootstrap=200)
    m["processes"] = 1  # one adaptive agent process per run
    m["rounds"] = 0  # no fixed round count: each entry stops on its CI target or budget
    m.update(kw)
    return Method(**m)


@pytest.fixture
def sshd(tmp_path):
    s = Sshd(tmp_path / "sshd").start()
    yield s
    s.stop()


def inventory(tmp_path, *entries_toml) -> Path:
    path = tmp_path / "devices.toml"
    path.write_text("\n".join(entries_toml))
    return path


def cli_args(inv: Path, out: Path, *names, extra=()):
    argv = [x for n in names for x in ("--device", n)] + ["--devices", str(inv), "--out", str(out), "--quiet",
                                                          *extra]
    return profile_parser().parse_args(argv)


def run_fleet(inv, out, names, blocks, method=None, extra=()):
    devices = [resolve_device(n, str(inv)) for n in names]
    return profile_fleet(devices, HARDCORE, cli_args(inv, out, *names, extra=extra), method or fast(),
                         entries=entries(blocks))


def lut_of(out: Path, device: str) -> Lut:
    found = sorted((out / device).rglob("*.json"))
    assert len(found) == 1, found
    return Lut.load(found[0])
