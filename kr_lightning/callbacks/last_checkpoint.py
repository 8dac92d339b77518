"""LastCheckpoint: ``last.ckpt`` after every epoch (or at most once per interval), whatever the other callbacks keep."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint


class LastCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` at the end of an epoch (after validation when it runs every epoch).

    Lightning 2.6's ``ModelCheckpoint(save_last=True)`` only refreshes ``last.ckpt`` on epochs where it also saved
    a top-k file, so a run killed later would resume from an old epoch. The CLI adds this callback whenever a
    config asks for ``save_last`` (a config may list it itself, to set ``min_interval_s``).

    Args:
        dirpath: Checkpoint folder (the CLI fills in ``<run>/checkpoints``).
        save_on_train_epoch_end: Save at the end of the training epoch (``None``: after validation when it runs
            every epoch).
        min_interval_s: Skip an epoch's save while ``last.ckpt`` is younger than this (the final epoch, or one
            that stops the fit, always saves). For large models on small data sets, where writing the checkpoint
            takes longer than the epoch (the GPU profile's generator on BreastMNIST: 3 steps an epoch); a rerun
            then repeats at most this much training. ``0``: every epoch.
    """

    def __init__(
        self, dirpath: str | None = None, save_on_train_epoch_end: bool | None = None, min_interval_s: float = 0.0
    ) -> None:
        if min_interval_s < 0:
            raise ValueError(f"LastCheckpoint: min_interval_s must be >= 0 seconds, got {min_interval_s}")
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_epochs=1,
            enable_version_counter=False,
            save_on_train_epoch_end=save_on_train_epoch_end,
        )
        self.min_interval_s = min_interval_s

    @property
    def state_key(self) -> str:
        """Distinct from every plain ``ModelCheckpoint`` so that both can be saved in one checkpoint."""
        return self._generate_state_key(kind="last")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save (when saving at the training epoch's end) unless the interval has not passed."""
        if self.due(trainer):
            super().on_train_epoch_end(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Save (when saving after validation) unless the interval has not passed."""
        if self.due(trainer):
            super().on_validation_end(trainer, pl_module)

    def due(self, trainer: L.Trainer) -> bool:
        """Whether this epoch writes ``last.ckpt``: the interval has passed since it was written, or the fit ends."""
        if self.min_interval_s == 0 or final_epoch(trainer) or self.dirpath is None:
            return True
        last = Path(self.dirpath) / f"last{self.FILE_EXTENSION}"
        return not last.is_file() or time.time() - last.stat().st_mtime >= self.min_interval_s


def final_epoch(trainer: L.Trainer) -> bool:
    """Whether the epoch now ending is the fit's last: a stop was asked, or ``max_steps`` or ``max_epochs`` is met."""
    if trainer.should_stop:
        return True
    if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    return trainer.max_epochs is not None and trainer.max_epochs > 0 and trainer.current_epoch + 1 >= trainer.max_epochs
