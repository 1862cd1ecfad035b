"""The TFLite path on the host: litert-torch conversion of real blocks (outputs match torch), atomic writes, a
named ImportError without the package, and `--runtime tflite` on the local device."""
import sys
from pathlib import Path

import numpy as np
import pytest

from profiler.space import HARDCORE, BlockSpec

# One block of each kind the space has: stem conv, fixed depthwise-separable, inverted residual with and without SE
# and with a residual connection, and the head.
KINDS = ["conv_k3_i3_o32_s2_hs@224", "ds_k3_i32_o16_s1_re@112", "ir_k5_e6_se1_i40_o80_s2_hs@28",
         "ir_k3_e3_se0_i192_o192_s1_hs@7", "head_i192_o960_f1280_c1000_hs@7"]


@pytest.mark.parametrize("name", KINDS)
def test_blocks_convert_and_match_torch(name, tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    import torch
    from ai_edge_litert.interpreter import Interpreter

    from profiler.export import export_block
    from profiler.nets import build_block

    b = BlockSpec.parse(name)
    path, _ = export_block(b, 1, "tflite")
    # no temporary file of this conversion is left (another, killed process's may be: not this test's to judge)
    assert path.suffix == ".tflite" and not list(path.parent.glob(f".{path.name}.*.tmp"))
    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    assert tuple(inp["shape"]) == b.input_shape(1)  # NCHW kept: the agent feeds the ONNX model's shape
    x = torch.randn(*b.input_shape(1))
    it.set_tensor(inp["index"], x.numpy())
    it.invoke()
    with torch.no_grad():
        want = build_block(b).eval()(x).numpy()
    np.testing.assert_allclose(it.get_tensor(out["index"]), want.reshape(out["shape"]), rtol=1e-3, atol=1e-4)


def test_missing_converter_names_the_package(monkeypatch, tmp_path):
    import torch

    from profiler.tflite import export_tflite

    monkeypatch.setitem(sys.modules, "litert_torch", None)  # import fails as if not installed
    with pytest.raises(ImportError, match="litert-torch") as err:
        export_tflite(torch.nn.Identity(), (1, 3, 8, 8), tmp_path / "x.tflite")
    assert err.value.name == "litert-torch" and "lutnas[tflite]" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_failed_conversion_leaves_no_file(monkeypatch, tmp_path):
    pytest.importorskip("litert_torch")
    import litert_torch
    import torch

    from profiler.tflite import export_tflite

    def boom(*a, **k):
        raise RuntimeError("conversion failed")

    monkeypatch.setattr(litert_torch, "convert", boom)
    with pytest.raises(RuntimeError, match="conversion failed"):
        export_tflite(torch.nn.Identity(), (1, 3, 8, 8), tmp_path / "x.tflite")
    assert list(tmp_path.iterdir()) == []


def test_local_profile_with_runtime_tflite(tmp_path):
    pytest.importorskip("litert_torch", reason="TFLite conversion needs: pip install 'lutnas[tflite]' torch==2.13.0")
    from profiler.devices import LOCAL
    from profiler.lut import Lut
    from profiler.runner import profile
    from tests.conftest import TFLITE_BLOCKS, fast

    path, _ = profile(LOCAL, HARDCORE, LOCAL.runtime_settings("tflite"), 1, fast(), tmp_path, progress=False,
                      entries=[(n, BlockSpec.parse(n), None) for n in TFLITE_BLOCKS])
    lut = Lut.load(path)
    assert lut.data["runtime"]["name"] == "tflite" and "ai_edge_litert" in lut.data["runtime"]["version"]
    assert set(lut.data["entries"]) == set(TFLITE_BLOCKS)
    assert Path(path).suffix == ".json"
