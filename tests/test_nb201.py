"""NB201 cell space: arch-string grammar over all 15,625, graph structure, the multilinear latency model (numpy vs
torch vs brute force), the torch network and its ONNX export run in ONNX Runtime, and the piece-table formula."""
import numpy as np
import pytest
import torch

from profiler.nb201 import (CHAIN, CONV1, CONV3, EDGES, N_ZERO_CALIBRATION, NB201, NONE, OPS, POOL, SHORT, CellArch,
                            all_archs, all_op_codes, calibration_archs, calibration_key, connected, live_edges,
                            profile_entries, profile_pieces, random_archs, zero_calibration_archs)
from profiler.nb201_model import CellLatency, features, piece_table, used_edges
from profiler.nb201_torch import build_module

EXAMPLE = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"


def test_round_trip_every_arch():
    archs = all_archs()
    assert len(archs) == 15625 == len({str(a) for a in archs})
    for i, a in enumerate(archs):
        assert CellArch.parse(str(a)) == a
        assert a.index == i and CellArch.from_index(i) == a
    assert (all_op_codes()[1234] == archs[1234].ops).all()


def test_parse_nb201_string():
    a = CellArch.parse(EXAMPLE)
    assert [OPS[o] for o in a.ops] == ["nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1",
                                       "skip_connect"]
    assert str(a) == EXAMPLE
    alpha, beta = a.one_hot()
    assert alpha.shape == (6, 5) and alpha.sum() == 6 and beta.shape == (0, 1)


@pytest.mark.parametrize("bad, msg", [
    ("|nor_conv_3x3~0|+|skip_connect~0|none~1|", "has 2 nodes"),
    (EXAMPLE.replace("avg_pool_3x3", "max_pool_3x3"), "unknown op 'max_pool_3x3'"),
    (EXAMPLE.replace("none~1", "none~0"), "appears twice"),
    (EXAMPLE.replace("|+|avg", "+|avg"), "expected '|op~j|...|'"),
    (EXAMPLE.replace("none~1", "none1"), "unknown edge token 'none1'"),
    (EXAMPLE.replace("skip_connect~2", "skip_connect~3"), "no source node 3"),
])
def test_bad_arch_strings(bad, msg):
    with pytest.raises(ValueError, match=msg.replace("|", r"\|").replace("(", r"\(")):
        CellArch.parse(bad)


def test_live_edges_and_connectivity():
    codes = np.array([
        CellArch.parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|").ops,  # nothing at all
        CellArch.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|").ops,  # 0->1 dead end
        CellArch.parse("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|none~2|").ops,
    ])
    live = live_edges(codes)
    assert not live[0].any() and not connected(codes)[0]
    assert not live[1].any() and not connected(codes)[1]  # 0->1 leads nowhere, 2->3 has no input
    # 0->1->2 is computed but node 2 feeds only a 'none' edge: only 0->3 is live
    assert live[2].tolist() == [False, False, False, True, False, False] and connected(codes)[2]
    # what a graph runtime still runs: edges whose output reaches node 3, even when fed by an all-zero node
    from profiler.nb201_model import used_edges

    assert used_edges(codes)[1].tolist() == [False, False, False, False, False, True]
    assert (used_edges(codes)[2] == live[2]).all()


def _random_table(seed=0):
    x, names = features(all_op_codes(), ["op", "live", "pair", "disconnected"])
    w = np.random.default_rng(seed).uniform(0, 1, len(names))
    return CellLatency.from_weights(names, w, ["op", "live", "pair", "disconnected"])


def test_additive_model_is_alpha_theta():
    rng = np.random.default_rng(1)
    fixed, theta = 3.0, rng.uniform(0, 2, (6, 5))
    table = fixed + theta[np.arange(6), all_op_codes()].sum(1)
    m = CellLatency("latency", "ms", table)
    alpha = rng.dirichlet(np.ones(5), size=(7, 6))
    assert np.allclose(m.predict(alpha), fixed + (alpha * theta).sum((-1, -2)))
    f2, t2 = m.additive()
    assert np.allclose(f2 + (alpha * t2).sum((-1, -2)), m.predict(alpha))
    assert m.argmin_arch().ops == tuple(theta.argmin(1)) and np.isclose(m.max_value(), fixed + theta.max(1).sum())


def test_multilinear_model_numpy_torch_and_brute_force_agree():
    m = _random_table()
    rng = np.random.default_rng(2)
    alpha = rng.dirichlet(np.ones(5), size=(3, 6))
    codes = all_op_codes()
    brute = [(m.table * np.prod(a[np.arange(6), codes], axis=1)).sum() for a in alpha]
    assert np.allclose(m.predict(alpha), brute)
    at = torch.tensor(alpha, requires_grad=True)
    out = m.predict_torch(at)
    assert np.allclose(out.detach().numpy(), brute)
    out.sum().backward()
    g, gb = m.grad(alpha)
    assert gb is None and np.allclose(at.grad.numpy(), g)
    v0, g0 = m.value_and_grad(alpha[0])  # the one-α path the searchers call every step
    assert np.isclose(v0, brute[0]) and np.allclose(g0, g[0]) and np.allclose(m.grad(alpha[0])[0], g[0])
    # one-hot α: the table itself, and ∂/∂α_{e,o} is the table with edge e switched to op o
    a = CellArch.parse(EXAMPLE)
    assert m.predict(*a.one_hot()) == m.predict_arch(a) == m.table[a.index]
    g1, gb1 = m.grad(*a.one_hot())
    assert gb1.shape == (0, 1)
    b = CellArch(tuple(4 if e == 2 else o for e, o in enumerate(a.ops)))
    assert np.isclose(g1[2, 4], m.predict_arch(b))


def test_network_runs_and_none_is_zero():
    from profiler.nb201_torch import build_network

    x = torch.randn(2, 3, 32, 32)
    empty = build_network(CellArch((NONE,) * 6))
    assert empty(x).shape == (2, 10)
    # every cell outputs zeros, so the network's output does not depend on its input
    assert torch.allclose(empty(x), empty(torch.randn(2, 3, 32, 32)))
    full = build_network(CellArch.parse(EXAMPLE))
    assert not torch.allclose(full(x), full(torch.randn(2, 3, 32, 32)))
    n_cells = sum(type(mod).__name__ == "Cell" for mod in full.modules())
    assert n_cells == 15


@pytest.mark.parametrize("piece", profile_pieces(), ids=str)
def test_every_piece_exports_and_runs_in_onnxruntime(piece, tmp_path, monkeypatch):
    import onnxruntime as ort

    from profiler.export import cached

    monkeypatch.setenv("LUTNAS_CACHE", str(tmp_path))
    path, new = cached(str(piece), piece.input_shape(1), lambda: build_module(piece))
    assert new and path.exists()
    x = np.random.default_rng(0).standard_normal(piece.input_shape(1)).astype(np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = build_module(piece)(torch.from_numpy(x)).detach().numpy()
    assert y.shape == want.shape and np.allclose(y, want, atol=1e-4)


def test_network_export_matches_torch(tmp_path, monkeypatch):
    import onnxruntime as ort

    from profiler.runner import entry_shape, export_entry

    monkeypatch.setenv("LUTNAS_CACHE", str(tmp_path))
    a = CellArch.parse(EXAMPLE)
    path, _ = export_entry(a, None, 1, "onnx")  # the profiling path: what validate measures
    assert entry_shape(a, 1) == [1, 3, 32, 32]
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.allclose(y, build_module(a)(torch.from_numpy(x)).detach().numpy(), atol=1e-4)


def _costs(price):
    cost = {}
    for p in profile_pieces():
        if p.kind in price:
            # call cost 1, 0.3 at a chain's ends, each copy its price; stages cost 1x, 2x, 4x
            cost[str(p)] = 1.0 + 0.3 + p.reps * price[p.kind] * (p.c / 16)
        else:
            cost[str(p)] = {"stem": 7.0, "reduce": 3.0, "head": 2.0, "skip_connect": 1.0}[p.kind]
    return cost


def test_piece_table_formula():
    """Synthetic piece costs: call cost 1 per model, ops at distinct prices, so each network's sum is known."""
    # a zero piece copy is a 1x1 conv, an add and the zero node (0.75); a relu piece copy a 1x1 conv and a ReLU,
    # here free (the ReLU's own price is checked at the end)
    price = {"nor_conv_1x1": 2.0, "nor_conv_3x3": 5.0, "avg_pool_3x3": 0.5, "add": 0.25, "zero": 3.0, "relu": 2.0}
    cost = _costs(price)
    t = piece_table(cost)
    # conv3, skip, none, pool, conv1, skip: node 2 has 1 input; node 3 sums pool + conv1 (folded into the conv)
    # + skip (an add of its own)
    a = CellArch.parse(EXAMPLE)
    cell = 5.0 + 0.5 + 2.0 + 1 * 0.25
    assert np.isclose(t[a.index], 7.0 + 2 * (3.0 - 1.0) + (2.0 - 1.0) + 5 * cell * (1 + 2 + 4))
    # every cell's output is a zero: one x * 0 per cell
    assert np.isclose(t[CellArch((NONE,) * 6).index], 7.0 + 4.0 + 1.0 + 5 * 0.75 * (1 + 2 + 4))
    # node 1 is a zero read by a 1x1 conv; node 2 is the same zero (computed once) and read by nothing; node 3's
    # sum skip + conv is folded into the conv
    z = CellArch.parse("|none~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|")
    assert np.isclose(t[z.index], 7.0 + 4.0 + 1.0 + 5 * (2.0 + 0.75) * (1 + 2 + 4))
    # a LUT from before the zero piece charges nothing for it; one from before the short chains takes the call cost
    # off the long chain, which also charges the chain's ends (0.3, spread over its copies)
    old = piece_table({k: v for k, v in cost.items() if "_zero_" not in k and not k.endswith(f"_x{SHORT}")})
    assert np.isclose(old[CellArch((NONE,) * 6).index], 7.0 + 4.0 + 1.0)
    assert np.isclose(old[a.index], t[a.index] + 5 * (0.3 / CHAIN) * 4 * 3)  # 4 copies charged in each of 3 stages
    # three pools out of node 0 (to nodes 1, 2, 3) are one pool: the same tensor, computed once; a fourth out of
    # node 1 is another. Node 3 sums 2 inputs (1 add), node 2 one.
    pools = CellArch.parse("|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|")
    assert np.isclose(t[pools.index], 7.0 + 2 * (3.0 - 1.0) + (2.0 - 1.0) + 5 * (2 * 0.5 + 0.25) * (1 + 2 + 4))
    assert len(EDGES) == 6 and NB201.hash == NB201.hash and len(NB201.hash) == 16
    # calibration networks measured at fixed parts + 1.25 x their cells' sum scale every cell by 1.25
    fixed = 7.0 + 2 * (3.0 - 1.0) + (2.0 - 1.0)
    cal = dict(cost, **{calibration_key(c): fixed + 1.25 * (t[c.index] - fixed) for c in calibration_archs()})
    t2 = piece_table(cal)
    assert np.isclose(t2[a.index], fixed + 1.25 * 5 * cell * (1 + 2 + 4))
    assert np.allclose(t2 - fixed, 1.25 * (t - fixed))
    # convs at 1.2x, the other ops at 0.8x: both factors are recovered (the zero piece holds a conv and an add)
    convs_only = _costs(dict(price, avg_pool_3x3=0.0, add=0.0, zero=2.0))
    conv_part = piece_table(convs_only) - fixed
    other_part = t - fixed - conv_part
    cal = dict(cost, **{calibration_key(c): fixed + 1.2 * conv_part[c.index] + 0.8 * other_part[c.index]
                        for c in calibration_archs()})
    assert np.allclose(piece_table(cal), fixed + 1.2 * conv_part + 0.8 * other_part)
    assert np.isclose(piece_table(cal)[a.index], fixed + 5 * (1.2 * 7.0 + 0.8 * 0.75) * (1 + 2 + 4))
    # zero nodes at 1.8x their piece, the rest as measured: the zero calibration networks give them their own factor
    # (the all-'none' cell is one zero per cell); without those networks the zeros take the other ops' factor
    zero_part = t - piece_table(dict(cost, **{k: v for k, v in _costs(dict(price, zero=0.0)).items() if "_zero_" in k}))
    cal = dict(cost, **{calibration_key(c): t[c.index] + 0.8 * zero_part[c.index] for c in calibration_archs()})
    assert zero_calibration_archs() == calibration_archs()[-N_ZERO_CALIBRATION:]
    assert all(zero_part[c.index] > 0 for c in zero_calibration_archs())
    assert np.allclose(piece_table(cal), t + 0.8 * zero_part)
    none = CellArch((NONE,) * 6).index
    assert np.isclose(piece_table(cal)[none] - fixed, 1.8 * 5 * 0.75 * (1 + 2 + 4)) and zero_part[none] > 0
    cal = {k: v for k, v in cal.items() if k not in {calibration_key(c) for c in zero_calibration_archs()}}
    assert np.allclose(piece_table(cal), t)
    # ReLUs on their own at 0.4: in EXAMPLE node 0 is read by two convs and raw by a pool, and node 1 (a conv's
    # output) by nothing: one ReLU in every cell, the stage's first included
    relu = piece_table(_costs(dict(price, relu=2.4))) - t
    assert np.isclose(relu[a.index], 5 * 0.4 * (1 + 2 + 4))
    # node 0 read by convs alone: its ReLU is fused into the conv that made it (the stem, a reduction block, the
    # previous cell's last conv) -- none
    fused = CellArch.parse("|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|")
    assert np.isclose(relu[fused.index], 0.0)
    # the same, but the cell's output is a pool's: only a stage's first cell gets a conv's output
    pooled = CellArch.parse("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|")
    assert np.isclose(relu[pooled.index], 4 * 0.4 * (1 + 2 + 4))
    assert (relu >= 0).all() and relu.max() > relu[a.index]


def test_profile_space_nb201_local_end_to_end(tmp_path):
    """`profile --space nb201 --device local` measures every piece with the real agent and ONNX Runtime; the LUT
    gives a model over all 15,625 networks."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from profiler.lut import Lut

    env = dict(os.environ, LUTNAS_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([str(Path(sys.executable).parent / "profile"), "--space", "nb201", "--device", "local",
                        "--processes", "1", "--budget", "0.3", "--quiet", "--out", str(tmp_path / "luts")],
                       capture_output=True, text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr
    lut = Lut.load(r.stdout.strip().splitlines()[-1])
    assert lut.data["space"] == {"name": "nb201", "hash": NB201.hash}
    assert set(lut.entries) == {k for k, _, _ in profile_entries()}
    med = {k: v["median_ms"] for k, v in lut.entries.items()}
    # 9x the multiply-adds: a chain of 3x3 convs costs more than one of 1x1 convs at the last stage's shape
    assert med[f"nb201_nor_conv_3x3_c64r8_x{CHAIN}"] > med[f"nb201_nor_conv_1x1_c64r8_x{CHAIN}"]
    model = lut.latency_model()
    # the cheapest network computes nothing in its cells: no conv or pool on an edge that is used
    lo = np.array([model.argmin_arch().ops])
    assert model.min_value() > 0 and not (np.isin(lo, (CONV1, CONV3, POOL)) & used_edges(lo)).any()
    assert model.argmax_arch().ops == (3,) * 6  # every edge a 3x3 conv


def test_params_and_flops_tables_count_the_torch_network():
    """params_model/flops_model on the cell space: every non-'none' edge's module counts (live or not), the torch
    network built by profiler/nb201_torch.py has exactly those parameters; FLOPs grow with the convolutions."""
    from profiler.model import flops_model, params_model
    from profiler.nb201_torch import Network

    params, flops = params_model(NB201), flops_model(NB201)
    for a in random_archs(np.random.default_rng(5), 4) + [CellArch((3,) * 6), CellArch((0,) * 6)]:
        assert params.predict_arch(a) == sum(x.numel() for x in Network(a).parameters())
    assert flops.argmax_arch() == CellArch((3,) * 6) and flops.argmin_arch().ops.count(CONV3) == 0
    assert params.max_value() == 1531546  # NAS-Bench-201's largest cell network: 1.53 M parameters


@pytest.mark.parametrize("arch", [
    EXAMPLE, "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|skip_connect~0|none~1|+|none~0|nor_conv_1x1~1|skip_connect~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|avg_pool_3x3~0|avg_pool_3x3~1|none~2|",  # node 1 is node 0's tensor
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|none~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # zero + conv: no fold
    "|avg_pool_3x3~0|+|none~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|skip_connect~2|",  # skip of a conv: folds
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|none~1|avg_pool_3x3~2|",  # every ReLU fused
    "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|avg_pool_3x3~2|",  # a ReLU after the pool, not first
    "|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|none~2|"])  # ReLU of x0 and of zero
def test_node_sums_and_zero_nodes_match_the_optimised_graph(arch, tmp_path):
    """What piece_table charges per cell is what ONNX Runtime runs: the adds left after folding sums into convs
    (``node_sums``), one x * 0 per cell with a read zero node (``zero_nodes``), the pools of distinct tensors
    (``distinct_pools``) and the ReLUs it cannot fuse into a conv (``cell_relus``), counted on the optimised
    graph."""
    import collections

    import onnx
    import onnxruntime as ort

    from profiler.export import export_onnx
    from profiler.nb201_ops import cell_relus, distinct_pools, node_sums, zero_nodes
    from profiler.nb201_torch import build_network

    a = CellArch.parse(arch)
    path = export_onnx(build_network(a), a.input_shape(1), tmp_path / "m.onnx")
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    codes = np.array([a.ops])
    cells = NB201.cells_per_stage * len(NB201.channels)
    assert ops["Add"] == cells * node_sums(codes)[0]
    assert ops["Mul"] == cells * zero_nodes(codes)[0]
    assert ops["AveragePool"] == 2 + cells * distinct_pools(codes)[0]  # 2: the reduction blocks' shortcuts
    first, rest, zero = cell_relus(codes)[0]
    stages, per_stage = len(NB201.channels), NB201.cells_per_stage
    # 2: the reduction blocks' own (their input is also read raw by the shortcut's pool)
    assert ops["Relu"] == 2 + stages * (first + (per_stage - 1) * rest + per_stage * zero)
