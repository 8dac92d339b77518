"""Student: the classifier trained only on synthetic images, against the teacher's soft labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from kr_lightning.errors import ConfigError
from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.losses import kd_loss
from kr_lightning.models.networks import SmallCNN


class Student(ClassifierModule):
    """Knowledge-distillation loss on ``(x, teacher_logits, y)`` batches from :class:`GKDDataModule`.

    Loss (see :func:`kd_loss`): ``(1 - alpha) T^2 CE(softmax(z / T), softmax(t / T)) + alpha CE(z, y)`` with
    student logits ``z``, teacher logits ``t`` and the generator's class ``y``. ``alpha = 1`` is the hard-label
    baseline (no teacher needed). Validation and test are on real images, exactly as for the teacher.

    Args:
        temperature: Distillation temperature ``T``.
        alpha: Weight of the hard-label term in ``[0, 1]``.
        label_smoothing: Label smoothing of the targets.
        (others): See :class:`ClassifierModule`.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        image_size: int = 28,
        net: Callable[[int, int], nn.Module] = SmallCNN,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.05,
        schedule: Literal["cosine", "constant"] = "cosine",
        temperature: float = 1.0,
        alpha: float = 0.0,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(num_classes, in_channels, image_size, net, lr, weight_decay, warmup_fraction, schedule)
        if temperature <= 0 or not 0.0 <= alpha <= 1.0 or not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"need temperature > 0, 0 <= alpha <= 1, 0 <= label_smoothing < 1; got {temperature}, {alpha}, "
                f"{label_smoothing}"
            )

    def setup(self, stage: str) -> None:
        """Refuse soft-label training without a teacher (it would fit uniform targets)."""
        datamodule = self.trainer.datamodule
        if stage == "fit" and self.hparams.alpha < 1.0 and not getattr(datamodule, "has_teacher", True):
            raise ConfigError(
                "the student uses soft labels (alpha < 1) but the data module has no teacher: set "
                "data.teacher_ckpt, or model.alpha: 1.0 for the hard-label baseline"
            )

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """KD loss against the teacher logits at temperature ``T``, mixed with the generator class."""
        x, teacher, y = batch
        hp = self.hparams
        targets = (teacher.float() / hp.temperature).softmax(-1)
        return kd_loss(
            self(x), targets, y, temperature=hp.temperature, alpha=hp.alpha, label_smoothing=hp.label_smoothing
        )
