"""Datasets for training the supernet: a built-in offline one and the user's own (.npz or an image folder).

The built-in set is scikit-learn's ``load_digits`` (1797 grey 8×8 handwritten digits, 10 classes), which ships inside
a dependency, so training and the tests work without a network. Every image is upsampled to the supernet's training
resolution (its own setting, e.g. 32 or 64 — not the LUT's 224), given 3 channels and standardised with the training
split's per-channel mean and std. The train/validation split is fixed (stratified, seed 0) so one-shot and stand-alone
accuracies in the ranking benchmark are measured on the same images.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .supernet import SupernetError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_SEED = 0  # fixed: the validation split must not move between runs
VAL_FRACTION = 0.2


class DataError(SupernetError):
    """A dataset path or file that cannot be used (missing, wrong arrays, no images)."""


@dataclass
class Dataset:
    """Images (N, 3, R, R) float32, standardised; labels (N,) int64 in 0..classes-1."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    classes: int

    @property
    def resolution(self) -> int:
        return int(self.x_train.shape[-1])

    def batches(self, split: str = "train", batch_size: int = 64, generator=None,
                shuffle: bool = True) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches of a split; the last short batch of a shuffled train epoch is dropped (BN needs > 1)."""
        x, y = (self.x_train, self.y_train) if split == "train" else (self.x_val, self.y_val)
        n = len(y)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if shuffle and n >= batch_size else n
        for i in range(0, stop, batch_size):
            idx = order[i:i + batch_size]
            yield x[idx], y[idx]


def load_data(data: Union[str, Path, "Dataset"] = "digits", resolution: int = 32) -> Dataset:
    """``"digits"`` (built in), a ``.npz`` file with arrays ``x`` and ``y``, or a folder with one subfolder per class.

    Raises:
        DataError: the path does not exist or holds no usable images, naming the path and what is wrong.
    """
    if isinstance(data, Dataset):
        return data
    if str(data) == "digits":
        x, y, name = *_digits(), "digits"
    else:
        path = Path(data)
        if not path.exists():
            raise DataError(f"no dataset at {str(path)!r}; expected 'digits', a .npz file or an image folder")
        if path.is_dir():
            x, y = _image_folder(path, resolution)
        elif path.suffix == ".npz":
            x, y = _npz(path)
        else:
            raise DataError(f"cannot read dataset {str(path)!r}: expected a .npz file or an image folder")
        name = str(path)
    return _prepare(x, y, resolution, name)


def _digits() -> Tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images.astype(np.float32)[:, None] / 16.0, d.target  # NCHW, values 0..16 → 0..1


def _npz(path: Path) -> Tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x", "y") if k not in z.files]
            if missing:
                raise DataError(f"{str(path)!r} lacks array(s) {', '.join(missing)}; found {', '.join(z.files)}")
            x, y = z["x"], z["y"]
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc}") from None
    if x.ndim == 3:  # N×H×W grey
        x = x[:, None]
    elif x.ndim == 4:
        # N×H×W×C unless the second axis looks like channels and the last does not.
        if not (x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3)):
            x = x.transpose(0, 3, 1, 2)
    else:
        raise DataError(f"{str(path)!r}: x has shape {x.shape}; expected N×H×W×C, N×C×H×W or N×H×W")
    if x.shape[1] not in (1, 3):
        raise DataError(f"{str(path)!r}: x has {x.shape[1]} channels; expected 1 or 3")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{str(path)!r}: y has shape {y.shape}; expected ({len(x)},), one label per image")
    integer = np.issubdtype(x.dtype, np.integer)
    x = x.astype(np.float32)
    if integer or x.max() > 1.5:  # 0..255 images; float images in 0..1 stay as they are
        x = x / 255.0
    return x, y


def _image_folder(path: Path, resolution: int) -> Tuple[np.ndarray, np.ndarray]:
    try:
        from PIL import Image  # matplotlib depends on pillow, so it is normally there
    except ImportError:
        raise DataError(f"reading the image folder {str(path)!r} needs pillow (pip install pillow)") from None
    classes = sorted(p for p in path.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, folder in enumerate(classes):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    im = im.convert("RGB").resize((resolution, resolution), Image.BILINEAR)
                    xs.append(np.asarray(im, dtype=np.float32).transpose(2, 0, 1) / 255.0)
            except OSError as exc:
                raise DataError(f"cannot read image {str(f)!r}: {exc}") from None
            ys.append(label)
    if len(set(ys)) < 2:
        raise DataError(f"image folder {str(path)!r} needs at least 2 class subfolders with images "
                        f"({', '.join(IMAGE_SUFFIXES)}); found {len(set(ys))}")
    return np.stack(xs), np.asarray(ys)


def _prepare(x: np.ndarray, y: np.ndarray, resolution: int, name: str) -> Dataset:
    from sklearn.model_selection import train_test_split

    labels, y = np.unique(y, return_inverse=True)  # any label values → 0..K-1, sorted
    if len(labels) < 2:
        raise DataError(f"dataset {name!r} has {len(labels)} class; need at least 2")
    counts = np.bincount(y)
    stratify = y if counts.min() >= 2 else None  # stratifying needs two images of every class
    idx_tr, idx_va = train_test_split(np.arange(len(y)), test_size=VAL_FRACTION, random_state=SPLIT_SEED,
                                      stratify=stratify)
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if t.shape[-1] != resolution or t.shape[-2] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False)
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    tr = torch.from_numpy(idx_tr)
    mean = t[tr].mean((0, 2, 3), keepdim=True)
    std = t[tr].std((0, 2, 3), keepdim=True).clamp(min=1e-6)
    t = ((t - mean) / std).contiguous()
    yt = torch.from_numpy(y.astype(np.int64))
    return Dataset(name, t[tr], yt[tr], t[torch.from_numpy(idx_va)], yt[torch.from_numpy(idx_va)], len(labels))
