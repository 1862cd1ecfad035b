"""The stochastic supernet oracle (search/oracle.py) against exact references, on a tiny supernet."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from profiler.space import HARDCORE, random_arch
from search.data import load_data
from search.oracle import SupernetOracle, fixed_objective
from search.probe import probe_depth, probe_slot
from search.stopping import ORACLE_PATIENCE, default_patience
from search.supernet import Supernet, frozen_bn_stats, make_objective

torch.set_num_threads(1)
RES, WIDTH = 16, 0.25


@pytest.fixture(scope="module")
def net():
    """An untrained tiny supernet with settled BN statistics and a scaled classifier, so that the last stage's
    configs differ clearly in loss (untrained, the logits hardly depend on the architecture)."""
    torch.manual_seed(0)
    n = Supernet(HARDCORE, RES, WIDTH, 10)
    for m in n.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.5
    n.train()
    x = load_data("digits", RES).x_train[:128]
    with torch.no_grad():
        for _ in range(5):
            n(x)
        n.head.classifier.weight.mul_(300.0)
    return n.eval()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", RES)


def _central(net):
    a, b = (t.numpy().astype(np.float64) for t in net.uniform())
    return a, b


def test_mixture_minibatches_average_to_the_full_mixture_gradient(net, digits):
    """One pass of the rotating mini-batches averages to make_objective on the whole split (per-sample BN)."""
    o = SupernetOracle(net, digits, estimator="mixture", images=72, bn="running")  # 360 = 5 × 72
    a, b = _central(net)
    rng = np.random.default_rng(0)
    a = a * rng.uniform(0.5, 1.5, a.shape)
    a /= a.sum(-1, keepdims=True)
    full = make_objective(net, (digits.x_val, digits.y_val), bn="running")(a, b)
    parts = [o(a, b) for _ in range(5)]
    assert o.stats["samples"] == 360
    assert np.mean([p[0] for p in parts]) == pytest.approx(full[0], rel=1e-5)
    ga = np.mean([p[1] for p in parts], 0)
    gb = np.mean([p[2] for p in parts], 0)
    assert np.allclose(ga, full[1], rtol=1e-4, atol=1e-6 * np.abs(full[1]).max())
    assert np.allclose(gb, full[2], rtol=1e-4, atol=1e-6 * np.abs(full[2]).max())
    single = parts[0][1]  # one mini-batch alone is not the full gradient (the test above could fail)
    assert not np.allclose(single, full[1], rtol=1e-2)


def test_score_gradient_converges_to_the_exact_gradient_of_the_expected_loss(net, digits):
    """One slot random, every other choice fixed (ε = 0): F = Σ_c q_c L̄_c is enumerable; their mean matches."""
    o = SupernetOracle(net, digits, "score", images=90, paths=4, explore=0.0, prior=0.0, bn="running", seed=1)
    arch = random_arch(np.random.default_rng(3))
    a, b = arch.one_hot()
    a, b = a.astype(np.float64), b.astype(np.float64)
    w = np.random.default_rng(4).uniform(0.2, 1.0, 12)
    a[4, 0] = w / w.sum()  # slot (4, 0) is random; the rest one-hot
    # Exact: loss of each config at (4, 0) over the whole pool, under running BN statistics.
    x = o.stemmed()
    exact_l = []
    with torch.no_grad():
        for c in range(12):
            stages = list(arch.stages)
            stages[4] = (c,) + tuple(stages[4][1:])
            sub = type(arch)(tuple(stages), arch.space)
            exact_l.append(float(F.cross_entropy(net._forward_arch(x, sub, stemmed=True), o.y)))
    exact_l = np.array(exact_l)
    q = a[4, 0]
    exact = exact_l - q @ exact_l  # ∂F/∂α_c up to a constant: L̄_c − F
    draws = np.mean([o(a, b)[1][4, 0] for _ in range(40)], 0)  # 40 × 360 paths
    spread = exact.max() - exact.min()
    assert spread > 0.5  # the configs differ, so the comparison means something
    assert np.abs(draws - exact).max() < 0.15 * spread, (draws, exact)
    assert np.corrcoef(draws, exact)[0, 1] > 0.95
    # the fixed slots never vary (ε = 0): their drawn config gets the mean advantage (0 up to rounding), the others 0
    g = o(a, b)[1]
    assert np.isfinite(g).all() and np.abs(g[:4]).max() < 1e-5 and np.abs(g[4, 1:]).max() < 1e-5


def test_stem_runs_once_per_pool_image_across_calls_targets_and_true_losses(net, digits):
    o = SupernetOracle(net, digits, "score", images=64, paths=2)
    seen = []
    hook = net.stem.register_forward_hook(lambda m, i, out: seen.append(i[0].shape[0]))
    try:
        a, b = _central(net)
        for _ in range(12):  # more than two passes over the 360-image pool
            o(a, b)
        oa, ob = random_arch(np.random.default_rng(0)).one_hot()
        o(oa, ob)
        o.true_loss(random_arch(np.random.default_rng(1)))
    finally:
        hook.remove()
    assert sum(seen) == 360 and o.stats["stem_images"] == 360
    assert o.stats["samples"] == 13 * 64 * 2


def test_sampled_oracles_keep_no_graph_the_mixture_keeps_one_per_config(net, digits):
    """Memory relation: bytes saved for backward — none for sampled paths, ≥ 12 paths' worth for the mixture."""
    a, b = _central(net)
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    def measure(oracle):
        saved.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            oracle(a, b)
        return sum(saved)

    mixture = measure(SupernetOracle(net, digits, estimator="mixture", images=32))
    sampled = measure(SupernetOracle(net, digits, "score", images=32, paths=4))  # 4× the samples, still nothing
    paired = measure(SupernetOracle(net, digits, images=32))
    # one path's activations on the batch: the pool's stem output is the smallest of them
    one_map = 32 * SupernetOracle(net, digits).stemmed()[0].numel() * 4
    assert sampled == 0 and paired == 0
    assert mixture > 12 * 20 * one_map / 4


def test_true_loss_is_cached_by_arch_and_is_the_single_path_pool_loss(net, digits):
    o = SupernetOracle(net, digits)
    arch, other = (random_arch(np.random.default_rng(s)) for s in (5, 6))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    v1 = o.true_loss(arch)
    oa, ob = arch.one_hot()
    v2 = o(oa, ob)[0]  # a one-hot call (a projection candidate) gets the same deterministic value
    assert v1 == v2 == o.true_loss(arch)
    assert o.stats["true_evals"] == 1 and o.stats["true_hits"] == 2
    assert o.true_loss(other) != v1 and o.stats["true_evals"] == 2
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # weights and BN buffers untouched
    net.train()
    with torch.no_grad(), frozen_bn_stats(net):
        ref = float(F.cross_entropy(net._forward_arch(o.stemmed(), arch, stemmed=True), o.y))
    net.eval()
    assert v1 == pytest.approx(ref, rel=1e-6)


def test_bad_settings_are_refused(net, digits):
    with pytest.raises(ValueError, match="unknown estimator 'st'"):
        SupernetOracle(net, digits, estimator="st")
    with pytest.raises(ValueError, match="need paths >= 2"):
        SupernetOracle(net, digits, paths=1)
    o = SupernetOracle(net, digits)
    with pytest.raises(ValueError, match=r"expected \(\(5, 4, 12\), \(5, 3\)\)"):
        o(np.zeros((5, 4, 11)), np.zeros((5, 3)))


def test_paired_probes_equal_separate_single_path_passes(net, digits):
    """Every alternative of a slot (or of a stage's depth) in one batch, BN statistics per alternative, computes
    what separate single-path passes compute (batch statistics, as true_loss)."""
    o = SupernetOracle(net, digits)
    arch = random_arch(np.random.default_rng(7))
    stages = [list(x) for x in arch.stages]
    stages[2] = (stages[2] + [3, 8])[:4]  # stage 2 at depth 4: every depth can be cut from it
    h, y = o.stemmed()[:40], o.y[:40]

    def alone(st):
        with torch.no_grad():
            return float(F.cross_entropy(net._forward_arch(h, type(arch)(tuple(map(tuple, st)), arch.space),
                                                           stemmed=True), y))

    with o._frozen(train=True), torch.no_grad():  # batch statistics, the running ones restored after
        slot = probe_slot(net, h, y, stages, 2, 1)
        depth = probe_depth(net, h, y, stages, 2, HARDCORE.depths)
        ref_slot = [alone([s if i != 2 else s[:1] + [c] + s[2:] for i, s in enumerate(stages)]) for c in range(12)]
        ref_depth = [alone([s if i != 2 else s[:d] for i, s in enumerate(stages)]) for d in HARDCORE.depths]
    assert np.allclose(slot.numpy(), ref_slot, rtol=1e-5) and np.allclose(depth.numpy(), ref_depth, rtol=1e-5)
    assert np.ptp(ref_slot) > 1e-3 and np.ptp(ref_depth) > 1e-3  # the alternatives differ: the test means something


def test_paired_gradient_converges_to_the_exact_gradient_of_the_expected_loss(net, digits):
    """Two slots random, the rest one-hot (ε = 0, running BN: per-sample losses), every probe on the whole pool: F
    and its gradient are enumerable (12·3 architectures each), and the mean paired estimate matches them; with one
    stage's depth random instead, the base path is fixed and the depth gradient is exact."""
    o = SupernetOracle(net, digits, images=60, pool=60, explore=0.0, bn="running", seed=2, probes=25, memory=1)
    arch = random_arch(np.random.default_rng(8))
    a, b = arch.one_hot()
    rng = np.random.default_rng(9)
    (s1, b1), (s2, b2) = (4, 0), (3, 0)  # slots every depth has, whose configs matter on this net
    q1, q2 = np.zeros(12), np.zeros(12)
    q1[[0, 5, 10]], q2[[2, 7, 11]] = rng.dirichlet(np.ones(3)), rng.dirichlet(np.ones(3))
    a[s1, b1], a[s2, b2] = q1, q2

    def loss(c1, c2, stage3=None):
        st = [list(x) for x in arch.stages]
        st[s1][b1], st[s2][b2] = c1, c2
        st[3] = st[3] if stage3 is None else stage3
        return o.true_loss(type(arch)(tuple(map(tuple, st)), arch.space))

    g1 = np.array([sum(q2[c2] * loss(c1, c2) for c2 in np.flatnonzero(q2)) for c1 in range(12)])
    g2 = np.array([sum(q1[c1] * loss(c1, c2) for c1 in np.flatnonzero(q1)) for c2 in range(12)])
    calls = [o(a, b) for _ in range(4)]
    for (s, i), exact in (((s1, b1), g1), ((s2, b2), g2)):
        est, exact = np.mean([c[1][s, i] for c in calls], 0), g1 if s == s1 else g2
        est, exact = est - est.mean(), exact - exact.mean()
        assert np.ptp(exact) > 0.01, exact  # the alternatives differ, so the comparison means something
        assert np.abs(est - exact).max() < 0.15 * np.ptp(exact) and np.corrcoef(est, exact)[0, 1] > 0.95, (est, exact)
    a, b = arch.one_hot()
    b[3] = [0.2, 0.3, 0.5]
    deep = [a[3, i].argmax() for i in range(4)]  # the configs the base path gives stage 3's slots
    exact = np.array([loss(a[s1, b1].argmax(), a[s2, b2].argmax(), deep[:d]) for d in HARDCORE.depths])
    est = o(a, b)[2][3]
    assert np.allclose(est - est.mean(), exact - exact.mean(), atol=1e-5) and np.ptp(exact) > 0.01


def test_paired_mean_gradient_is_close_to_the_full_mixture_gradient(net, digits):
    """Not the same function (the expected loss of sampled paths vs the loss of the expected output; the test above
    checks the estimate against its own), but related: a sign or scale error would break this."""
    rng = np.random.default_rng(1)
    a, b = _central(net)
    a, b = a * rng.uniform(0.5, 1.5, a.shape), b * rng.uniform(0.5, 1.5, b.shape)
    a, b = a / a.sum(-1, keepdims=True), b / b.sum(-1, keepdims=True)
    o = SupernetOracle(net, digits, images=60, pool=60, explore=0.0, bn="running", seed=1, probes=25, memory=1)
    full = make_objective(net, (o.x, o.y), bn="running")(a, b)  # the mixture on the same 60 images
    calls = [o(a, b) for _ in range(4)]
    c = lambda g: (g - g.mean(-1, keepdims=True)).ravel()  # noqa: E731 (a constant per group moves no LP)
    # measured 0.68 and 0.98 here: close for the depths, only related for the configs (on the trained 32-pixel
    # supernet of docs/BENCHMARKS.md the two config gradients correlate 0.2): the searchers now follow the former
    assert np.corrcoef(c(np.mean([x[1] for x in calls], 0)), c(full[1]))[0, 1] > 0.5
    assert np.corrcoef(c(np.mean([x[2] for x in calls], 0)), c(full[2]))[0, 1] > 0.9


def test_values_at_architectures_run_no_probe_and_the_prefix_cache_changes_nothing(net, digits):
    o, plain = SupernetOracle(net, digits), SupernetOracle(net, digits, prefix_mib=0)
    rng = np.random.default_rng(11)
    base = random_arch(rng)
    moves = [base] + [type(base)(base.stages[:4] + ((int(c),) + base.stages[4][1:],), base.space) for c in range(12)]
    values = [o.value(*m.one_hot()) for m in moves]
    assert values == [plain.true_loss(m) for m in moves]  # bitwise: the same operations, later stages only
    assert o.stats["calls"] == 0 and o.stats["samples"] == 0  # value() at a one-hot point is true_loss alone
    assert o.stats["prefix_stages"] >= 4 * (len(set(map(str, moves))) - 1) and plain.stats["prefix_stages"] == 0


def test_fixed_objective_value_is_its_loss_without_the_gradient_pass(net, digits):
    xb, yb = digits.x_val[:64], digits.y_val[:64]
    f = fixed_objective(net, (xb, yb))
    for a, b in (random_arch(np.random.default_rng(3)).one_hot(), _central(net)):
        assert f.value(a, b) == pytest.approx(f(a, b)[0], rel=1e-6)


def test_the_default_estimator_is_paired_and_asks_for_early_stopping(net, digits):
    o = SupernetOracle(net, digits)
    assert o.estimator == "paired" and o.patience == ORACLE_PATIENCE > 0 and o.momentum == 0.0
    assert default_patience(o) == ORACLE_PATIENCE and default_patience(make_objective(net, (digits.x_val[:8],
                                                                                            digits.y_val[:8]))) == 0


def test_a_linearisation_at_an_architecture_is_probed_once_and_reused(net, digits):
    o = SupernetOracle(net, digits, images=16)
    oa, ob = random_arch(np.random.default_rng(12)).one_hot()
    first = o(oa, ob)
    samples = o.stats["samples"]
    first[1][:] = 0.0  # a caller writing into its copy changes nothing kept
    again = o(oa, ob)
    assert o.stats["grad_hits"] == 1 and o.stats["samples"] == samples  # no probe ran the second time
    assert again[0] == first[0] and np.abs(again[1]).max() > 0


def test_restart_gives_the_next_target_the_sampled_state_of_a_fresh_oracle(net, digits):
    """A sweep's looser target used to begin with the tighter one's probe table (its argmax settled on them):
    restart() puts the draws and the table back to a fresh oracle's, and keeps what is exact."""
    o, fresh = SupernetOracle(net, digits, images=16, seed=3), SupernetOracle(net, digits, images=16, seed=3)
    a, b = _central(net)
    o(a, b)
    arch = random_arch(np.random.default_rng(5))
    loss = o.true_loss(arch)
    assert float(o.table.n_alpha.sum()) > 0
    o.restart()
    assert float(o.table.n_alpha.sum()) == 0
    assert torch.equal(o.next_batch(), fresh.next_batch())
    got, want = o(a, b), fresh(a, b)
    assert got[0] == pytest.approx(want[0]) and np.allclose(got[1], want[1]) and np.allclose(got[2], want[2])
    hits = o.stats["true_hits"]
    assert o.true_loss(arch) == loss and o.stats["true_hits"] == hits + 1  # the true losses are kept
