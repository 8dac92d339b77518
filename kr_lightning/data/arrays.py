"""Image arrays in the MedMNIST npz layout: loading with validation, and the pixel scaling used everywhere.

Every image tensor inside kr_lightning is ``float32 (N, C, H, W)`` in ``[-1, 1]`` (uint8 ``v`` maps to
``v / 127.5 - 1``); labels are ``int64 (N,)`` class indices. Files keep MedMNIST's layout: ``{split}_images``
uint8 ``(N, H, W)`` or ``(N, H, W, C)`` and ``{split}_labels`` ``(N, 1)``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kr_lightning.errors import DataError, MissingInputError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """One split as uint8 images ``(N, H, W[, C])`` and int64 labels ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W)`` or ``(N, H, W, C)`` -> float32 ``(N, C, H, W)`` in ``[-1, 1]``."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.float().div(127.5).sub(1.0).contiguous()


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float ``(N, C, H, W)`` in ``[-1, 1]`` -> uint8 ``(N, H, W)`` (gray) or ``(N, H, W, C)`` (RGB)."""
    x = images.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).cpu()
    x = x[:, 0] if x.shape[1] == 1 else x.permute(0, 2, 3, 1)
    return x.numpy()


def check_split(name: str, images: np.ndarray, labels: np.ndarray, *, num_classes: int, source: str) -> Split:
    """Validate one split and return it with labels flattened to ``(N,)`` int64.

    Raises:
        ValueError: Wrong dtype, rank, sizes, or labels outside ``[0, num_classes)``, naming ``source``.
    """
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise DataError(
            f"{source}: {name}_images must be uint8 (N, H, W) or (N, H, W, 3); got {images.dtype} {images.shape}"
        )
    if labels.ndim == 2 and labels.shape[1] != 1:
        raise DataError(f"{source}: {name}_labels must have shape (N,) or (N, 1); got {labels.shape} (multi-label?)")
    flat = labels.reshape(-1).astype(np.int64)
    if len(flat) != len(images):
        raise DataError(f"{source}: {len(images)} {name}_images but {len(flat)} {name}_labels")
    if len(flat) and (flat.min() < 0 or flat.max() >= num_classes):
        raise DataError(f"{source}: {name}_labels must lie in [0, {num_classes}); found [{flat.min()}, {flat.max()}]")
    return Split(images=images, labels=flat)


def load_npz(path: Path, *, splits: tuple[str, ...] = SPLITS, num_classes: int) -> dict[str, Split]:
    """Read and validate a MedMNIST-layout npz.

    Args:
        path: The ``.npz`` file.
        splits: Which splits must be present.
        num_classes: Expected number of classes (labels are checked against it).

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is not a readable npz, lacks a key, or holds wrong shapes / labels.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no such file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            needed = [f"{s}_{kind}" for s in splits for kind in ("images", "labels")]
            missing = [k for k in needed if k not in keys]
            if missing:
                raise DataError(
                    f"{path}: missing keys {missing}; found {sorted(keys)}. "
                    "Expected the MedMNIST layout ({split}_images uint8, {split}_labels (N, 1))."
                )
            raw = {k: data[k] for k in needed}
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise DataError(f"{path} is not a readable npz file ({err}); delete it and provide the file again") from err
    return {
        s: check_split(s, raw[f"{s}_images"], raw[f"{s}_labels"], num_classes=num_classes, source=str(path))
        for s in splits
    }
