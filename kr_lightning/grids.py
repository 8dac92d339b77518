"""Image grids (one row per class) written as PNG files."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image

from kr_lightning import artifacts


def class_rows(images: torch.Tensor, labels: torch.Tensor, per_class: int, num_classes: int) -> torch.Tensor:
    """The first ``per_class`` images of each class in class order, ``(K * per_class, C, H, W)``.

    Classes with fewer images are padded with blank (-1) images so that every row has ``per_class`` entries.
    """
    rows = []
    for k in range(num_classes):
        chosen = images[labels == k][:per_class]
        blank = -torch.ones((per_class - len(chosen), *images.shape[1:]), dtype=images.dtype, device=images.device)
        rows.append(torch.cat([chosen, blank]))
    return torch.cat(rows)


def grid_image(images: torch.Tensor, per_row: int) -> torch.Tensor:
    """A ``(3, H, W)`` float image in ``[0, 1]`` of ``images`` (in ``[-1, 1]``), ``per_row`` per row."""
    return make_grid(images.detach().float().cpu().add(1).div(2).clamp(0, 1), nrow=per_row, padding=1, pad_value=1.0)


def save_grid(path: str | Path, images: torch.Tensor, per_row: int) -> Path:
    """Write ``images`` (in ``[-1, 1]``) as a PNG grid, atomically."""
    grid = grid_image(images, per_row)
    return artifacts.atomic_write(path, lambda fh: save_image(grid, fh, format="png"))
