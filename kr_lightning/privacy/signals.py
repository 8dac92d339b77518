"""Per-example signals of a trained classifier on the audit pool: logits on fixed augmented views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kr_lightning.data.arrays import SPLITS, Split, to_tensor
from kr_lightning.data.datamodule import ImageDataModule


@dataclass(frozen=True)
class AuditPool:
    """Every real image of a dataset, with where it came from.

    Attributes:
        images: uint8 ``(N, H, W[, C])``, the train, val and test splits concatenated in that order.
        labels: int64 ``(N,)``.
        origin: ``(N,)`` split names; the deployed teacher / student trained on ``origin == "train"`` (members).
    """

    images: np.ndarray
    labels: np.ndarray
    origin: np.ndarray

    @classmethod
    def from_datamodule(cls, data: ImageDataModule) -> AuditPool:
        """All three splits of ``data``."""
        splits = [data.split(name) for name in SPLITS]
        return cls(
            images=np.concatenate([s.images for s in splits]),
            labels=np.concatenate([s.labels for s in splits]),
            origin=np.concatenate([np.full(len(s), name) for name, s in zip(SPLITS, splits, strict=True)]),
        )

    @property
    def is_target_member(self) -> np.ndarray:
        """``(N,)`` bool: in the deployed models' training set."""
        return self.origin == "train"

    def subset(self, mask: np.ndarray) -> Split:
        """The images selected by a boolean mask, as a training split."""
        return Split(images=self.images[mask], labels=self.labels[mask])

    def __len__(self) -> int:
        return len(self.labels)


def query_views(x: torch.Tensor, *, shift: int, hflip: bool) -> list[torch.Tensor]:
    """Deterministic augmented views (the training augmentation's family): identity, 4 shifts, optional flip.

    Args:
        x: ``(N, C, H, W)`` in ``[-1, 1]``.
        shift: Shift in pixels (0: no shifted views).
        hflip: Add the horizontally flipped image.
    """
    views = [x]
    if shift > 0:
        padded = F.pad(x, (shift,) * 4, mode="replicate")
        h, w = x.shape[-2:]
        for dy, dx in ((-shift, 0), (shift, 0), (0, -shift), (0, shift)):
            views.append(padded[..., shift + dy : shift + dy + h, shift + dx : shift + dx + w])
    if hflip:
        views.append(x.flip(-1))
    return views


@torch.no_grad()
def view_logits(model: nn.Module, images: np.ndarray, *, shift: int, hflip: bool, batch_size: int = 512) -> np.ndarray:
    """Logits ``(N, Q, K)`` float32 of ``model`` (eval mode) on the ``Q`` views of uint8 ``images``."""
    model.eval()
    device = next(model.parameters()).device
    x = to_tensor(images)
    out = []
    for start in range(0, len(x), batch_size):
        views = query_views(x[start : start + batch_size].to(device), shift=shift, hflip=hflip)
        out.append(torch.stack([model(v).float() for v in views], dim=1).cpu())
    return torch.cat(out).numpy()
