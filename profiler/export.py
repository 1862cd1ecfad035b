"""Export blocks and networks to ONNX, cached by content so an unchanged block is never exported twice.

The cache key covers everything that changes the file: the block or architecture string, batch, opset, the space's
implementation version and torch's version. Files are written to a temporary name and renamed, so a killed export
never leaves a truncated model in the cache.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Callable, Tuple

from .files import atomic_file

OPSET = 17


def cache_dir() -> Path:
    """``$LUTNAS_CACHE`` or ``~/.cache/lutnas``."""
    return Path(os.environ.get("LUTNAS_CACHE") or Path.home() / ".cache" / "lutnas")


def torch_version() -> str:
    """torch's version without importing torch (seconds) when only a cache key is needed (issue 18)."""
    import sys

    if "torch" in sys.modules:
        return sys.modules["torch"].__version__
    from importlib.metadata import version

    return version("torch")


def cache_key(name: str, input_shape: Tuple[int, ...], fmt: str = "onnx") -> str:
    from .space import IMPL_VERSION

    blob = f"{name}|{input_shape}|{fmt}|opset{OPSET}|impl{IMPL_VERSION}|torch{torch_version()}"
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def export_onnx(module, input_shape: Tuple[int, ...], path: Path) -> Path:
    """Export ``module`` at a fixed ``input_shape`` to ``path`` atomically."""
    import torch

    x = torch.randn(*input_shape)
    with atomic_file(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, once per block
        torch.onnx.export(module.eval(), (x,), tmp, input_names=["x"], output_names=["y"], opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    return Path(path)


def cached(name: str, input_shape: Tuple[int, ...], build: Callable[[], object], fmt: str = "onnx") -> Tuple[Path, bool]:
    """Path of the cached export of ``name`` (exporting it with ``build()`` if absent); and whether it was new."""
    path = cache_dir() / fmt / f"{cache_key(name, input_shape, fmt)}.{'tflite' if fmt == 'tflite' else 'onnx'}"
    if path.exists():
        return path, False
    if fmt == "onnx":
        export_onnx(build(), input_shape, path)
    elif fmt == "tflite":
        from .tflite import export_tflite

        export_tflite(build(), input_shape, path)
    else:
        raise ValueError(f"unknown model format {fmt!r}; expected 'onnx' or 'tflite'")
    return path, True


def export_block(block, batch: int = 1, fmt: str = "onnx") -> Tuple[Path, bool]:
    """Export one block (a ``BlockSpec``) at its real input shape; returns (path, newly exported)."""
    def build():  # torch is imported only when the cache lacks the model
        from .nets import build_block

        return build_block(block)

    return cached(str(block), block.input_shape(batch), build, fmt)


def export_arch(arch, batch: int = 1, fmt: str = "onnx") -> Tuple[Path, bool]:
    """Export a whole network (an ``Arch``) at the space's input resolution."""
    def build():
        from .nets import build_network

        return build_network(arch)

    shape = (batch, 3, arch.space.resolution, arch.space.resolution)
    return cached("net:" + str(arch), shape, build, fmt)
