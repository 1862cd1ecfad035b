"""Supernet (HardCoRe-NAS multi-path one-shot training), data loading and training: fast, tiny settings."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from profiler.errors import WouldOverwrite
from profiler.space import HARDCORE, Arch, random_arch
from search.data import DataError, load_data
from search.checkpoint import load_checkpoint, save_checkpoint
from search.supernet import CheckpointError, CheckpointMismatch, Supernet, gumbel_softmax, make_objective
from search.train import evaluate, train_main, train_subnet, train_supernet

torch.set_num_threads(1)
RES, WIDTH = 16, 0.25  # tiny: every test here runs in well under a few seconds


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return Supernet(HARDCORE, resolution=RES, width=WIDTH, classes=10)


@pytest.fixture(scope="module")
def digits():
    return load_data("digits", RES)


def _trained_bn(net, x):
    # A few multi-path training-mode passes so running BN statistics are not the trivial (0, 1).
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(x)
    net.eval()


def test_per_sample_paths_differ_and_are_uniform(net):
    a, b = net.sample(512, generator=torch.Generator().manual_seed(1))
    assert a.shape == (512, 5, 4, 12) and b.shape == (512, 5, 3)
    paths = {(tuple(x.argmax(-1).flatten().tolist()), tuple(y.argmax(-1).tolist())) for x, y in zip(a, b)}
    assert len(paths) == 512  # every sample its own sub-network
    freq = np.bincount(a.argmax(-1).flatten().numpy(), minlength=12) / a[..., 0].numel()
    assert np.allclose(freq, 1 / 12, atol=0.02)
    assert np.allclose(np.bincount(b.argmax(-1).flatten().numpy(), minlength=3) / b[..., 0].numel(), 1 / 3,
                       atol=0.03)


def test_gumbel_soft_and_straight_through():
    p = torch.full((4, 12), 1 / 12, requires_grad=True)
    soft = gumbel_softmax(p, tau=1.0, hard=False)
    assert torch.allclose(soft.sum(-1), torch.ones(4)) and (soft < 1).all()
    hard = gumbel_softmax(p, hard=True)
    assert torch.allclose(hard.detach().sum(-1), torch.ones(4)) and hard.requires_grad


def test_multipath_batch_equals_each_sample_run_alone(net, digits):
    x = digits.x_val[:6]
    _trained_bn(net, digits.x_train[:64])
    a, b = net.sample(6, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        together = net(x, a, b)
        alone = torch.cat([net(x[i:i + 1], arch=net.to_arch(a[i], b[i])) for i in range(6)])
    assert torch.allclose(together, alone, atol=1e-5)


def test_multipath_training_bn_equals_sub_batches(net, digits):
    """Training-mode BN of the masked path takes statistics per config, as running each config on its sub-batch."""
    x = digits.x_train[:48].double()
    n = Supernet(HARDCORE, RES, WIDTH).double().train()
    a, b = n.sample(48, generator=torch.Generator().manual_seed(3))
    cfg, blk = a.argmax(-1)[:, 0, 0], n.stages[0][0]
    h = n._stem(x)
    with torch.no_grad():
        masked = blk.forward_paths(h, cfg, None)
        for c in cfg.unique().tolist():
            idx = (cfg == c).nonzero()[:, 0]
            assert torch.allclose(masked[idx], blk.forward_config(h[idx], c), atol=1e-9)


def test_weight_sharing_is_real(net):
    blk = net.stages[1][2]
    cfgs = HARDCORE.configs
    e3k3 = cfgs.index(dataclasses.replace(cfgs[0], e=3, k=3, se=1))
    w3, w6 = blk.weights(e3k3), blk.weights(len(cfgs) - 1)
    assert w6["pw"].data_ptr() == blk.pw.weight.data_ptr() == w3["pw"].data_ptr()
    assert w3["pw"].untyped_storage().data_ptr() == blk.pw.weight.untyped_storage().data_ptr()
    assert w3["pw"].shape[0] < w6["pw"].shape[0]
    assert w3["dw"].shape[-1] == 3 and w6["dw"].shape[-1] == 5
    assert w3["dw"].untyped_storage().data_ptr() == blk.dw.weight.untyped_storage().data_ptr()
    assert torch.equal(w3["dw"], blk.dw.weight[:w3["dw"].shape[0], :, 1:4, 1:4])  # k3 = centre of k5
    assert w3["se_reduce"].shape[0] == blk.rds[e3k3] < blk.se_reduce.weight.shape[0]
    # A gradient through the e3 slice lands in the shared e6 parameter.
    blk.zero_grad()
    w3["pw"].sum().backward()
    assert blk.pw.weight.grad[: w3["pw"].shape[0]].abs().sum() > 0
    assert blk.pw.weight.grad[w3["pw"].shape[0]:].abs().sum() == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_arch_forward_equals_one_hot_mixture(net, digits, seed):
    arch = random_arch(np.random.default_rng(seed))
    a, b = (torch.tensor(t, dtype=torch.float32) for t in arch.one_hot())
    x = digits.x_val[:8]
    for train in (False, True):
        net.train(train)
        with torch.no_grad():
            fixed = net(x, arch=arch)
            mixture = net._forward_mixture(x, a, b)  # the relaxed path, fed one-hot weights
            via_forward = net(x, a, b)
        assert torch.allclose(fixed, mixture, atol=1e-5)
        assert torch.allclose(fixed, via_forward, atol=1e-5)
    net.eval()


def test_objective_gradients_match_finite_differences(digits):
    torch.manual_seed(0)
    n = Supernet(HARDCORE, RES, WIDTH).double()
    objective = make_objective(n, (digits.x_val[:16], digits.y_val[:16]))
    rng = np.random.default_rng(0)
    alpha = rng.dirichlet(np.ones(12), size=(5, 4))
    beta = rng.dirichlet(np.ones(3), size=5)
    before = {k: v.clone() for k, v in n.state_dict().items()}
    loss, ga, gb = objective(alpha, beta)
    assert ga.shape == (5, 4, 12) and gb.shape == (5, 3)
    assert np.isfinite(loss) and np.isfinite(ga).all() and np.isfinite(gb).all() and np.abs(ga).sum() > 0
    for k, v in n.state_dict().items():  # the oracle never changes the network
        assert torch.equal(v, before[k]), k
    eps = 1e-7  # float64; larger steps cross ReLU/hard-swish kinks somewhere in the 240 block evaluations
    for _ in range(2):
        da, db = rng.normal(size=alpha.shape), rng.normal(size=beta.shape)
        fd = (objective(alpha + eps * da, beta + eps * db)[0] - objective(alpha - eps * da, beta - eps * db)[0]) / (2 * eps)
        an = float((ga * da).sum() + (gb * db).sum())
        assert fd == pytest.approx(an, rel=1e-4, abs=1e-8)
    with pytest.raises(ValueError, match="shapes"):
        objective(alpha[:, :3], beta)


def test_checkpoint_round_trip_and_hash_refusal(tmp_path, net, digits):
    path = save_checkpoint(tmp_path / "sn.pt", net, epoch=3)
    loaded, extra = load_checkpoint(path)
    assert extra["epoch"] == 3 and loaded.settings == net.settings
    arch = random_arch(np.random.default_rng(5))
    net.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(net(digits.x_val[:4], arch=arch), loaded(digits.x_val[:4], arch=arch))
    other = dataclasses.replace(HARDCORE, impl_version=HARDCORE.impl_version + 1)
    with pytest.raises(CheckpointMismatch) as err:
        load_checkpoint(path, space=other)
    msg = str(err.value)
    assert str(path) in msg and HARDCORE.hash in msg and other.hash in msg
    with pytest.raises(CheckpointError, match="no supernet checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")


def test_train_interrupt_then_resume(tmp_path, digits, monkeypatch):
    import search.train as train_mod
    from search.train import TrainingInterrupted

    out = tmp_path / "sn.pt"
    kw = dict(resolution=RES, width=WIDTH, batch_size=128, lr=0.1, progress=False)
    real_save = train_mod.save_checkpoint

    def save_then_interrupt(*a, **k):  # Ctrl-C right after epoch 1 was written
        real_save(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_interrupt)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train_supernet(out, digits, epochs=2, **kw)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    _, e1 = load_checkpoint(out)
    assert e1["epoch"] == 1 and np.isfinite(e1["history"][0]["loss"])
    with pytest.raises(WouldOverwrite, match="exists; pass --resume to continue it"):
        train_supernet(out, digits, epochs=2, **kw)
    train_supernet(out, digits, epochs=2, resume=True, **kw)
    _, e2 = load_checkpoint(out)
    assert e2["epoch"] == 2 and [h["epoch"] for h in e2["history"]] == [1, 2]
    # No "loss decreases" check here: multi-path training sits near ln 10 for its first ~20 small steps
    # (docs/supernet.md); learning is checked on a sub-network in test_singlepath_and_subnet_training.
    # The resumed run reproduces a straight one (per-epoch RNG, optimizer state in the checkpoint).
    straight = tmp_path / "straight.pt"
    train_supernet(straight, digits, epochs=2, **kw)
    assert load_checkpoint(straight)[1]["history"][1]["loss"] == pytest.approx(e2["history"][1]["loss"], rel=1e-5)
    with pytest.raises(Exception, match="other settings"):
        train_supernet(out, digits, epochs=3, resume=True, **{**kw, "lr": 0.5})
    net, _ = load_checkpoint(out)
    acc = evaluate(net, random_arch(np.random.default_rng(0)), digits, bn_batches=2)
    assert 0.0 <= acc <= 1.0


def test_singlepath_and_subnet_training(tmp_path, digits):
    arch = Arch.parse("/".join(["e3_k3_se0,e3_k3_se0"] * 5))
    _, acc = train_subnet(arch, digits, epochs=2, resolution=RES, width=WIDTH, batch_size=128, progress=False)
    assert acc > 0.2  # well above chance (0.1) after two short epochs
    out = train_supernet(tmp_path / "sp.pt", digits, epochs=1, resolution=RES, width=WIDTH, batch_size=128,
                         mode="singlepath", progress=False)
    assert load_checkpoint(out)[1]["train"]["mode"] == "singlepath"


def test_npz_and_image_folder_data(tmp_path):
    rng = np.random.default_rng(0)
    nhwc = (rng.random((20, 10, 10, 3)) * 255).astype(np.uint8)
    np.savez(tmp_path / "d.npz", x=nhwc, y=np.repeat(["cat", "dog"], 10))
    ds = load_data(tmp_path / "d.npz", 12)
    assert ds.x_train.shape[1:] == (3, 12, 12) and ds.classes == 2 and len(ds.y_train) + len(ds.y_val) == 20
    np.savez(tmp_path / "nchw.npz", x=rng.random((20, 1, 9, 9)).astype(np.float32), y=np.arange(20) % 2)
    assert load_data(tmp_path / "nchw.npz", 8).x_val.shape[1:] == (3, 8, 8)
    np.savez(tmp_path / "bad.npz", images=nhwc)
    with pytest.raises(DataError, match="lacks array"):
        load_data(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="no dataset at"):
        load_data(tmp_path / "nope")
    PIL = pytest.importorskip("PIL.Image")
    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            PIL.fromarray(nhwc[i]).save(tmp_path / "imgs" / cls / f"{i}.png")
    ds = load_data(tmp_path / "imgs", 8)
    assert ds.classes == 2 and ds.x_train.shape[1:] == (3, 8, 8)


def test_cli_bad_data_is_one_line(tmp_path, capsys):
    rc = train_main(["--out", str(tmp_path / "x.pt"), "--data", str(tmp_path / "missing"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == DataError.status and len(err.splitlines()) == 1 and "missing" in err


def test_learning_rate_warms_up_then_decays_and_legacy_is_plain_cosine():
    import math

    from search.train import TrainSettings, learning_rate

    s, total = TrainSettings(lr=0.1, warmup=0.1), 150
    lrs = [learning_rate(s, i, total) for i in range(total)]
    assert lrs[0] < 0.01 and all(a < b for a, b in zip(lrs[:15], lrs[1:15]))  # linear ramp over 15 steps
    assert max(lrs) == pytest.approx(0.1, rel=1e-6) and lrs[-1] < 1e-3
    assert all(a >= b for a, b in zip(lrs[15:], lrs[16:]))  # then cosine, never up again
    legacy = TrainSettings(lr=0.1, warmup=0.0)
    assert [learning_rate(legacy, i, total) for i in range(total)] == pytest.approx(
        [0.05 * (1 + math.cos(math.pi * i / total)) for i in range(total)])


def test_a_checkpoint_from_before_warmup_and_clip_resumes_only_with_its_own_recipe(tmp_path, digits):
    from search.checkpoint import save_checkpoint as save

    out = tmp_path / "old.pt"
    kw = dict(resolution=RES, width=WIDTH, batch_size=128, lr=0.1, progress=False)
    train_supernet(out, digits, epochs=1, warmup=0.0, clip=0.0, **kw)
    net, extra = load_checkpoint(out)
    for k in ("warmup", "clip"):  # as written before these settings existed
        del extra["train"][k]
    save(out, net, **extra)
    with pytest.raises(Exception, match=r"warmup=0\.1 \(checkpoint 0\.0\)"):
        train_supernet(out, digits, epochs=2, resume=True, **kw)
    train_supernet(out, digits, epochs=2, resume=True, warmup=0.0, clip=0.0, **kw)
    assert load_checkpoint(out)[1]["epoch"] == 2
