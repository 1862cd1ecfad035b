"""Every block exports to ONNX and runs in ONNX Runtime with the same output as torch."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from profiler.export import export_block, export_arch
from profiler.nets import build_block, build_network
from profiler.space import HARDCORE, Arch

ALL_BLOCKS = HARDCORE.unique_blocks()


def _ort_out(path, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=str)
def test_block_exports_and_matches_torch(block):
    path, _ = export_block(block)
    x = np.random.default_rng(0).standard_normal(block.input_shape(1)).astype(np.float32)
    with torch.no_grad():
        ref = build_block(block)(torch.from_numpy(x)).numpy()
    out = _ort_out(path, x)
    assert out.shape == ref.shape
    np.testing.assert_allclose(out, ref, rtol=1e-3, atol=1e-3)


def test_export_is_cached_by_content():
    b = ALL_BLOCKS[5]
    p1, _ = export_block(b)
    mtime = p1.stat().st_mtime_ns
    p2, new = export_block(b)
    assert p1 == p2 and not new and p2.stat().st_mtime_ns == mtime
    p3, _ = export_block(b, batch=2)  # another input shape is another file
    assert p3 != p1


def test_whole_network_exports_and_matches_torch():
    arch = Arch.parse("e3_k3_se0,e6_k5_se1/e4_k5_se0,e4_k3_se1,e3_k3_se0/e6_k3_se0,e6_k3_se0/"
                      "e4_k5_se1,e3_k5_se0,e6_k5_se1,e3_k3_se0/e3_k3_se1,e6_k5_se0")
    path, _ = export_arch(arch)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        ref = build_network(arch)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_ort_out(path, x), ref, rtol=1e-3, atol=1e-3)
