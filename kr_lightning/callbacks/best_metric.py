"""BestMetric: log the best value so far of the metric a stage selects its checkpoint on (``val/acc_best``)."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback


class BestMetric(Callback):
    """Logs ``<monitor>_best``, the running best of ``monitor``, after every validation.

    Its last logged value is the value ``best.ckpt`` was selected on, so a W&B sweep whose ``metric`` is
    ``val/acc_best`` optimises what the stage selects (a sweep reads a metric's last logged value). The best value
    is kept in the callback's state, which Lightning saves in every checkpoint: a resumed run continues it. The CLI
    adds one for every ``ModelCheckpoint`` that monitors a metric.

    Args:
        monitor: The metric, e.g. ``val/acc``.
        mode: ``max`` or ``min``.
    """

    def __init__(self, monitor: str, mode: Literal["max", "min"] = "max") -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None

    @property
    def state_key(self) -> str:
        """One state per monitored metric."""
        return self._generate_state_key(monitor=self.monitor, mode=self.mode)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Update and log the best value (skipped during the sanity check, which selects nothing)."""
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        better = max if self.mode == "max" else min
        self.best = value if self.best is None else better(self.best, value)
        pl_module.log(f"{self.monitor}_best", torch.tensor(self.best), sync_dist=False)

    def state_dict(self) -> dict[str, Any]:
        """The best value so far."""
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a checkpoint's best value."""
        self.best = state_dict["best"]
