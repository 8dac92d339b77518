"""Teacher: the classifier trained on real labelled images (the real-data baseline and the soft-label source)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kr_lightning.models.classifier import ClassifierModule


class Teacher(ClassifierModule):
    """Cross-entropy on real ``(x, y)`` batches; everything else is :class:`ClassifierModule`."""

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``CE(logits(x), y)``."""
        x, y = batch
        return F.cross_entropy(self(x), y)
