"""ClassifierModule: everything the teacher and the student share; they differ only in :meth:`loss`."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassAUROC

from kr_lightning.errors import DivergedError
from kr_lightning.models.fit_checks import check_checkpoint_fits
from kr_lightning.models.lr_schedule import per_step, warmup_schedule
from kr_lightning.models.networks import SmallCNN


class ClassifierModule(L.LightningModule):
    """Image classifier system: backbone, metrics, optimisation; subclasses define the training loss.

    Metrics (torchmetrics, comparable to ``medmnist.Evaluator``): ``{val,test}/acc`` is plain (micro) accuracy of
    the argmax, ``{val,test}/auc`` the macro one-vs-rest AUROC of the softmax (for two classes, the AUROC of
    ``p(class 1)``). Validation and test batches are ``(x, y)``: real images ``(B, C, H, W)`` in ``[-1, 1]`` and
    labels ``(B,)``. Test-set probabilities are kept in :attr:`test_probs` for the run record.

    Args:
        num_classes: Number of classes K (linked from the data module).
        in_channels: Image channels (linked from the data module).
        image_size: Image side (linked from the data module; checked, not used by the backbone).
        net: Backbone factory called as ``net(in_channels, num_classes)``.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of the optimisation steps with a linear learning-rate warm-up.
        schedule: ``cosine`` decay to zero after the warm-up, or ``constant``.
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
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = net(in_channels, num_classes)
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
                "auc": MulticlassAUROC(num_classes=num_classes, average="macro"),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_probs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K)`` of images ``(B, C, H, W)`` in ``[-1, 1]``."""
        return self.net(x)

    @abstractmethod
    def loss(self, batch: Any) -> torch.Tensor:  # noqa: ANN401 - the batch layout belongs to the subclass
        """Training loss of one batch."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # noqa: ANN401
        """Compute and log ``train/loss``."""
        loss = self.loss(batch)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"training loss became {loss.item()} at epoch {self.current_epoch}, step {self.global_step}; "
                "lower model.lr or check the data. The last good checkpoint is kept in the run folder."
            )
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def _evaluate(self, batch: Any, metrics: MetricCollection, stage: str) -> torch.Tensor:  # noqa: ANN401
        x, y = batch[0], batch[-1]
        logits = self(x)
        metrics.update(logits.float().softmax(-1), y)
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), batch_size=len(y), sync_dist=True)
        self.log_dict(metrics, batch_size=len(y))
        return logits

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # noqa: ANN401
        """Update ``val/acc``, ``val/auc`` and ``val/loss`` on real validation images; the logits (for callbacks)."""
        return self._evaluate(batch, self.val_metrics, "val")

    def on_test_epoch_start(self) -> None:
        """Reset the stored test probabilities."""
        self.test_probs = []

    def test_step(self, batch: Any, batch_idx: int) -> None:  # noqa: ANN401
        """Update ``test/acc``, ``test/auc``, ``test/loss`` and keep the probabilities."""
        logits = self._evaluate(batch, self.test_metrics, "test")
        self.test_probs.append(logits.float().softmax(-1).cpu())

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # noqa: ANN401
        """Class probabilities ``(B, K)``."""
        return self(batch[0]).float().softmax(-1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another stage or of other data, with a message saying which."""
        check_checkpoint_fits(self, checkpoint)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """AdamW over every parameter (``lr``, ``weight_decay``)."""
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimizer as training steps it (DP-SGD wraps it to clip and noise per-sample gradients)."""
        return optimizer

    def configure_optimizers(self) -> dict[str, Any]:
        """:meth:`make_optimizer` with a linear warm-up then cosine decay (or constant), stepped every batch."""
        hp = self.hparams
        optimizer = self.wrap_optimizer(self.make_optimizer())
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_fraction * total)
        scheduler = warmup_schedule(optimizer, warmup_steps=warmup, total_steps=total, after=hp.schedule)
        return per_step(optimizer, scheduler)
