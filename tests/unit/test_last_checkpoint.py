"""LastCheckpoint: last.ckpt every epoch, or at most once per interval but always at the end of the fit."""

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from kr_lightning.callbacks import LastCheckpoint


class SavedEpochs(L.Callback):
    """Records, at each epoch's start, the epoch that last.ckpt then holds (None: no file yet)."""

    def __init__(self, path):
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer, pl_module):
        self.seen.append(torch.load(self.path, weights_only=True)["epoch"] if self.path.is_file() else None)


def fit(tmp_path, min_interval_s, **limits):
    last = tmp_path / "last.ckpt"
    probe = SavedEpochs(last)
    trainer = L.Trainer(
        callbacks=[LastCheckpoint(dirpath=str(tmp_path), min_interval_s=min_interval_s), probe],
        limit_train_batches=2,
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **limits,
    )
    trainer.fit(BoringModel())
    return probe.seen, torch.load(last, weights_only=True)


def test_every_epoch_by_default(tmp_path):
    seen, final = fit(tmp_path, 0.0, max_epochs=4)
    assert seen == [None, 0, 1, 2] and final["epoch"] == 3


def test_an_interval_skips_young_saves_but_the_final_epoch_always_saves(tmp_path):
    seen, final = fit(tmp_path, 3600.0, max_epochs=4)
    assert seen == [None, 0, 0, 0]  # the first epoch writes (no file yet); later ones wait for the hour
    assert final["epoch"] == 3 and final["global_step"] == 8  # the last epoch's weights, not epoch 0's


def test_the_final_epoch_under_max_steps_saves(tmp_path):
    seen, final = fit(tmp_path, 3600.0, max_epochs=-1, max_steps=5)  # 2 + 2 + 1 steps
    assert seen == [None, 0, 0] and final["global_step"] == 5


def test_a_negative_interval_is_refused():
    with pytest.raises(ValueError, match="min_interval_s must be >= 0"):
        LastCheckpoint(min_interval_s=-1.0)
