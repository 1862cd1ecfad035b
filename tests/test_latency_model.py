"""The latency formula αᵀΘβ (HardCoRe eq. 3) in numpy and torch, and the analytic params/FLOPs."""
import numpy as np
import pytest
import torch

from profiler.model import LinearResource, MissingBlock, block_cost, flops_model, params_model
from profiler.nets import build_block
from profiler.space import HARDCORE, Arch, random_arch

RNG = np.random.default_rng(0)
TABLE = {str(b): float(v) for b, v in zip(HARDCORE.unique_blocks(), RNG.uniform(0.05, 1.0, 123))}
MODEL = LinearResource.from_table(HARDCORE, TABLE)


def random_relaxed(rng, n=None):
    shape = () if n is None else (n,)
    a = rng.dirichlet(np.ones(12), size=shape + (5, 4))
    b = rng.dirichlet(np.ones(3), size=shape + (5,))
    return a, b


def test_discrete_prediction_is_the_sum_over_the_blocks():
    for _ in range(100):
        arch = random_arch(RNG)
        assert MODEL.predict_arch(arch) == pytest.approx(sum(TABLE[str(b)] for b in arch.blocks()))


def test_vectorised_matches_loop_and_torch_matches_numpy():
    a, b = random_relaxed(RNG, 16)
    vec = MODEL.predict(a, b)
    assert vec.shape == (16,)
    for i in range(16):
        assert vec[i] == pytest.approx(MODEL.predict(a[i], b[i]))
    t = MODEL.predict_torch(torch.tensor(a), torch.tensor(b)).numpy()
    np.testing.assert_allclose(t, vec, rtol=1e-12)


def test_relaxed_prediction_is_the_expectation_over_sampled_architectures():
    a, b = random_relaxed(RNG)
    n = 20000
    total = 0.0
    for _ in range(n):
        stages = []
        for s in range(5):
            d = HARDCORE.depths[RNG.choice(3, p=b[s])]
            stages.append(tuple(int(RNG.choice(12, p=a[s, j])) for j in range(d)))
        total += MODEL.predict_arch(Arch(tuple(stages)))
    mc = total / n
    assert MODEL.predict(a, b) == pytest.approx(mc, rel=0.01)


def test_gradients_match_finite_differences_and_autograd():
    a, b = random_relaxed(RNG)
    ga, gb = MODEL.grad(a, b)
    eps = 1e-6
    for idx in [(0, 0, 3), (2, 2, 7), (4, 3, 11)]:
        d = np.zeros_like(a)
        d[idx] = eps
        assert ga[idx] == pytest.approx((MODEL.predict(a + d, b) - MODEL.predict(a - d, b)) / (2 * eps), rel=1e-6)
    for idx in [(0, 0), (3, 2)]:
        d = np.zeros_like(b)
        d[idx] = eps
        assert gb[idx] == pytest.approx((MODEL.predict(a, b + d) - MODEL.predict(a, b - d)) / (2 * eps), rel=1e-6)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    MODEL.predict_torch(ta, tb).backward()
    np.testing.assert_allclose(ta.grad.numpy(), ga, rtol=1e-10)
    np.testing.assert_allclose(tb.grad.numpy(), gb, rtol=1e-10)


def test_min_and_max_are_attained_and_bound_random_architectures():
    lo, hi = MODEL.min_value(), MODEL.max_value()
    assert MODEL.predict_arch(MODEL.argmin_arch()) == pytest.approx(lo)
    vals = [MODEL.predict_arch(random_arch(RNG)) for _ in range(500)]
    assert lo <= min(vals) and max(vals) <= hi


def test_missing_block_is_named():
    table = dict(TABLE)
    key = str(HARDCORE.block(3, 1, HARDCORE.configs[5]))
    del table[key]
    with pytest.raises(MissingBlock, match=key):
        LinearResource.from_table(HARDCORE, table)


@pytest.mark.parametrize("block", HARDCORE.unique_blocks(), ids=str)
def test_params_formula_counts_the_torch_module(block):
    assert block_cost(block)[0] == sum(p.numel() for p in build_block(block).parameters())


def test_flops_formula_against_a_hand_count_and_the_network_total():
    b = HARDCORE.block(0, 0, HARDCORE.configs[0])  # ir_k3_e3_se0_i16_o24_s2_re@112
    assert block_cost(b)[1] == 16 * 48 * 112 * 112 + 48 * 9 * 56 * 56 + 48 * 24 * 56 * 56
    arch = random_arch(RNG)
    assert flops_model(HARDCORE).predict_arch(arch) == pytest.approx(sum(block_cost(x)[1] for x in arch.blocks()))
    net_params = params_model(HARDCORE).predict_arch(arch)
    from profiler.nets import build_network

    assert net_params == sum(p.numel() for p in build_network(arch).parameters())


def _torch_macs(block) -> int:
    """Multiply-accumulates of every Conv2d and Linear, counted from the shapes a real forward pass produces."""
    macs = []

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            macs.append(out.numel() * (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1])
        else:
            macs.append(out.numel() * mod.in_features)

    m = build_block(block)
    for mod in m.modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            mod.register_forward_hook(hook)
    with torch.no_grad():
        m(torch.zeros(block.input_shape()))
    return sum(macs)


@pytest.mark.parametrize("block", HARDCORE.unique_blocks()[::7] + HARDCORE.fixed_blocks(), ids=str)
def test_flops_formula_counts_the_torch_forward(block):
    assert block_cost(block)[1] == _torch_macs(block)


def test_extremes_match_brute_force_on_a_tiny_space():
    from itertools import product

    from profiler.space import Space, Stage

    tiny = Space(name="tiny", stages=(Stage(24, 2, "re"), Stage(40, 2, "re")), expansions=(3, 6), kernels=(3,),
                 se=(0,))
    table = {str(b): float(v) for b, v in zip(tiny.unique_blocks(), RNG.uniform(0.1, 1.0, 64))}
    model = LinearResource.from_table(tiny, table)
    stage_options = [tuple(c) for d in tiny.depths for c in product(range(2), repeat=d)]
    values = [model.predict_arch(Arch((a, b), tiny)) for a in stage_options for b in stage_options]
    assert model.min_value() == pytest.approx(min(values)) and model.max_value() == pytest.approx(max(values))
