"""Per-example signals of a trained classifier on the audit pool: logits on fixed augmented views."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kr_lightning.data.arrays import Split, to_tensor
from kr_lightning.data.datamodule import ImageDataModule

POOL_SPLITS = ("train", "test")  # val picks checkpoints and sampling knobs: never a non-member, never in the pool
CANARY = "canary"


@dataclass(frozen=True)
class AuditPool:
    """The real images an audit attacks, with where each came from.

    The pool is the train and test splits. The val split is left out: it selects the deployed models' checkpoints
    and sampling knobs (and the reference runs' checkpoints), so it is neither a clean non-member nor a free image.
    Canaries (:meth:`with_canaries`) are pool images given a wrong label; each appears once, as a canary.

    Attributes:
        images: uint8 ``(N, H, W[, C])``.
        labels: int64 ``(N,)``, the labels models train on (a canary's wrong label).
        origin: ``(N,)`` ``"train"`` (members of the deployed teacher / student), ``"test"`` (their clean
            non-members: never used for training or selection) or ``"canary"``.
    """

    images: np.ndarray
    labels: np.ndarray
    origin: np.ndarray

    @classmethod
    def from_datamodule(cls, data: ImageDataModule) -> AuditPool:
        """The train and test splits of ``data``, in that order."""
        splits = [data.split(name) for name in POOL_SPLITS]
        return cls(
            images=np.concatenate([s.images for s in splits]),
            labels=np.concatenate([s.labels for s in splits]).astype(np.int64),
            origin=np.concatenate([np.full(len(s), name) for name, s in zip(POOL_SPLITS, splits, strict=True)]),
        )

    def with_canaries(self, count: int, num_classes: int, rng: np.random.Generator) -> AuditPool:
        """``count`` random pool images turned into canaries: each relabelled to a random other class."""
        if not 0 <= count <= len(self):
            raise ValueError(f"n_canaries must lie in [0, {len(self)}] (the pool's images); got {count}")
        if count and num_classes < 2:
            raise ValueError("canaries need a dataset with at least 2 classes (a canary carries a wrong label)")
        chosen = rng.choice(len(self), size=count, replace=False)
        labels, origin = self.labels.copy(), self.origin.astype("U16")  # room for "canary"
        labels[chosen] = (labels[chosen] + rng.integers(1, max(2, num_classes), size=count)) % num_classes
        origin[chosen] = CANARY
        return AuditPool(images=self.images, labels=labels, origin=origin)

    @property
    def is_target_member(self) -> np.ndarray:
        """``(N,)`` bool: in the deployed models' training set (canaries excluded)."""
        return self.origin == "train"

    @property
    def is_canary(self) -> np.ndarray:
        """``(N,)`` bool: a mislabelled canary (IN for half the reference runs, never in a deployed model)."""
        return self.origin == CANARY

    @property
    def is_target_scored(self) -> np.ndarray:
        """``(N,)`` bool: the deployed models' clean ground truth (train members, test non-members)."""
        return ~self.is_canary

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
