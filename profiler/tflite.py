"""Convert a torch block to a .tflite file with litert-torch (the optional extra ``lutnas[tflite]``).

The model keeps torch's NCHW input (litert-torch inserts the layout transposes), so the agent feeds it the same
shape as the ONNX model of the same block. Written to a temporary name and renamed, like export.py's ONNX files.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Tuple

INSTALL = "pip install 'lutnas[tflite]' torch==2.13.0"


def _litert_torch():
    try:
        import litert_torch
    except ImportError as exc:
        raise ImportError(f"converting blocks to TFLite needs the package litert-torch ({exc}); install it with: "
                          f"{INSTALL}", name="litert-torch") from None
    return litert_torch


def export_tflite(module, input_shape: Tuple[int, ...], path: Path) -> Path:
    """Convert ``module`` at the fixed ``input_shape`` to a float32 .tflite file at ``path`` atomically.

    Raises:
        ImportError: litert-torch is not installed (``name`` is the package to install).
    """
    import torch

    from .files import atomic_file

    litert_torch = _litert_torch()
    x = torch.randn(*input_shape)
    # litert-torch prints a progress tree on stdout; the CLI's stdout carries only result paths
    with atomic_file(path) as tmp, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        litert_torch.convert(module.eval(), (x,)).export(tmp)
    return Path(path)
