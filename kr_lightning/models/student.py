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
from kr_lightning.models.sample_weights import Balance, Weighting, sample_weights, weights_anything


class Student(ClassifierModule):
    """Knowledge-distillation loss on ``(x, teacher_logits, y)`` batches from :class:`GKDDataModule`.

    Loss (see :func:`kd_loss`): ``(1 - alpha) T^2 CE(softmax(z / T), softmax(t / T)) + alpha CE(z, y)`` with
    student logits ``z``, teacher logits ``t`` and the generator's class ``y``. ``alpha = 1`` is the hard-label
    baseline (no teacher needed). Validation and test are on real images, exactly as for the teacher.

    ``weighting``, ``min_confidence`` and ``balance`` weight each synthetic image of a batch by what the teacher
    says about it (:mod:`kr_lightning.models.sample_weights`; the defaults weight every image 1); ``train/kept``
    logs the share of images with a non-zero weight.

    Args:
        temperature: Distillation temperature ``T``.
        alpha: Weight of the hard-label term in ``[0, 1]``.
        label_smoothing: Label smoothing of the targets.
        weighting: Per-image weight from the teacher: ``none``, ``confidence`` (its top probability) or
            ``agreement`` (its probability of the generator's class).
        min_confidence: Drop images whose teacher top probability is below this (``0``: keep all).
        balance: ``teacher``: every class the teacher predicts in a batch gets the same total weight.
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
        weighting: Weighting = "none",
        min_confidence: float = 0.0,
        balance: Balance = "none",
    ) -> None:
        super().__init__(num_classes, in_channels, image_size, net, lr, weight_decay, warmup_fraction, schedule)
        if temperature <= 0 or not 0.0 <= alpha <= 1.0 or not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"need temperature > 0, 0 <= alpha <= 1, 0 <= label_smoothing < 1; got {temperature}, {alpha}, "
                f"{label_smoothing}"
            )
        if not 0.0 <= min_confidence < 1.0:
            raise ConfigError(f"min_confidence must lie in [0, 1) (1 would drop every image); got {min_confidence}")
        if alpha == 1.0 and weights_anything(weighting, min_confidence, balance):
            raise ConfigError(
                "weighting, min_confidence and balance read the teacher's logits, which a hard-label student "
                "(alpha: 1) does not have: keep their defaults or use alpha < 1 with a teacher"
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
        weights = None
        if weights_anything(hp.weighting, hp.min_confidence, hp.balance):
            weights = sample_weights(
                teacher, y, weighting=hp.weighting, min_confidence=hp.min_confidence, balance=hp.balance
            )
            self.log("train/kept", (weights > 0).float().mean(), on_step=False, on_epoch=True, batch_size=len(y))
        return kd_loss(
            self(x),
            targets,
            y,
            temperature=hp.temperature,
            alpha=hp.alpha,
            label_smoothing=hp.label_smoothing,
            weights=weights,
        )
