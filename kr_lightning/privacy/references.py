"""Training the reference (shadow) runs of the privacy audit from the stages' own configs.

A reference run repeats the training recipe of a deployed stage on a different training set (the images marked
IN for it in the keep matrix). Configs are parsed by the same LightningCLI as ``fit``; only the training set,
the run folder and the seed change. Reference runs train for the configured epochs and keep the final weights
(no checkpoint selection: the val images are part of the audit pool).
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint

from kr_lightning.cli import KRCLI
from kr_lightning.data.arrays import Split, to_tensor
from kr_lightning.models.classifier import ClassifierModule

QUIET = [
    "--trainer.logger=false",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.limit_val_batches=0",
]


def build(config: Path, run: Path, seed: int, overrides: list[str]) -> KRCLI:
    """Instantiate model, data and trainer of a stage config without running it."""
    args = ["--config", str(config), f"--seed_everything={seed}", f"--trainer.default_root_dir={run}", *QUIET]
    return KRCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=None,
        auto_configure_optimizers=False,
        run=False,
        args=[*args, *overrides],
    )


def _fit(cli: KRCLI) -> None:
    """Fit without checkpoint callbacks (reference runs keep their final weights only)."""
    trainer = cli.trainer
    trainer.callbacks = [cb for cb in trainer.callbacks if not isinstance(cb, Checkpoint)]
    trainer.fit(cli.model, datamodule=cli.datamodule)


def train_classifier(config: Path, run: Path, seed: int, train: Split | None, overrides: list[str]) -> Path:
    """Train a teacher (``train``: its real training set) or a student (``train=None``); save ``model.ckpt``."""
    cli = build(config, run, seed, overrides)
    if train is not None:
        cli.datamodule.set_train(train)
    _fit(cli)
    path = run / "model.ckpt"
    cli.trainer.save_checkpoint(path, weights_only=True)
    return path


def train_generator(config: Path, run: Path, seed: int, train: Split, overrides: list[str]) -> Path:
    """Train a generator on ``train`` and export it (EMA weights) to ``<run>/export``."""
    cli = build(config, run, seed, overrides)
    cli.datamodule.set_train(train)
    _fit(cli)
    return cli.model.frozen().export(run / "export")


@torch.no_grad()
def accuracy(model: ClassifierModule, split: Split) -> float:
    """Plain accuracy of ``model`` on ``split``."""
    model.eval()
    device = next(model.parameters()).device
    x = to_tensor(split.images)
    predictions = torch.cat([model(x[i : i + 512].to(device)).argmax(-1).cpu() for i in range(0, len(x), 512)])
    return float((predictions.numpy() == split.labels).mean())


def class_counts(labels: torch.Tensor, num_classes: int) -> list[int]:
    """Images per class of a synthetic set (to give reference students the deployed student's set size)."""
    return np.bincount(labels.numpy(), minlength=num_classes).tolist()
