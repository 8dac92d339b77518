"""TieBreak: one metric that ranks by val accuracy and breaks its ties by val loss, for ``ModelCheckpoint``.

``ModelCheckpoint`` monitors a single metric. On a small val split accuracy ties often (78 images: it moves in
steps of 0.013), and the first epoch to reach the maximum is kept, however much its loss trails later epochs of the
same accuracy. Judged on val by split halves (``experiments/README.md``, "Which epoch to keep"), "highest val ACC,
ties to the lower val loss" (``acc_loss`` in :mod:`kr_lightning.checkpoint_rules`) beat the first maximum on 12 of 15
BreastMNIST runs. This callback logs that rule as one number to monitor with ``mode: max``::

    score = accuracy + 1 / (2 N) * 1 / (1 + loss)

with ``N`` the number of val images: the tie-break term lies in ``(0, 1 / (2 N)]``, below one accuracy step
(``1 / N``), so it orders epochs of equal accuracy by loss and never overturns an accuracy difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


def tie_broken(accuracy: float, loss: float, n_images: int) -> float:
    """The score: ``accuracy`` plus a term in ``(0, 1 / (2 n_images)]`` that falls as ``loss`` grows."""
    return accuracy + 1.0 / (2 * n_images) / (1.0 + loss)


def _n_images(loaders: Any) -> int:  # noqa: ANN401 - a DataLoader or a collection of them
    """Number of images over the val loaders (their datasets' lengths)."""
    loaders = [loaders] if not isinstance(loaders, Iterable) or hasattr(loaders, "dataset") else loaders
    return sum(len(loader.dataset) for loader in loaders)


class TieBreak(Callback):
    """Logs ``name`` = ``monitor`` with its ties broken by the lower ``tie_break`` (see the module docstring).

    Args:
        monitor: The accuracy-like metric to maximise, e.g. ``val/acc``.
        tie_break: The loss-like metric that orders its ties, lower first, e.g. ``val/loss``.
        name: The metric to log (monitor it with ``ModelCheckpoint(monitor=name, mode="max")``).
    """

    def __init__(self, monitor: str = "val/acc", tie_break: str = "val/loss", name: str = "val/acc_loss") -> None:
        self.monitor = monitor
        self.tie_break = tie_break
        self.name = name

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the score after the module has logged both metrics (not during the sanity check)."""
        metrics = trainer.callback_metrics
        if trainer.sanity_checking or self.monitor not in metrics or self.tie_break not in metrics:
            return
        n_images = _n_images(trainer.val_dataloaders)
        score = tie_broken(float(metrics[self.monitor]), float(metrics[self.tie_break]), n_images)
        pl_module.log(self.name, torch.tensor(score), sync_dist=False)
