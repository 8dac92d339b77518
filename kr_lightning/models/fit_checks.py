"""Checks that a trained stage fits the data and the config it is used with (clear errors, before any weights load)."""

from __future__ import annotations

import lightning as L

from kr_lightning.data.info import DatasetInfo
from kr_lightning.errors import CheckpointError


def check_fits_data(
    what: str, source: str, num_classes: int, in_channels: int, image_size: int, info: DatasetInfo
) -> None:
    """Raise a ``ValueError`` naming every property of a trained model that differs from the dataset's."""
    found = {"classes": num_classes, "channels": in_channels, "image size": image_size}
    expected = {"classes": info.num_classes, "channels": info.in_channels, "image size": info.image_size}
    wrong = [f"{k} {found[k]} (data: {expected[k]})" for k in found if found[k] != expected[k]]
    if wrong:
        raise CheckpointError(
            f"the {what} at {source} does not fit dataset {info.flag!r}: {', '.join(wrong)}. "
            f"Use the {what} trained on this dataset."
        )


def check_checkpoint_fits(module: L.LightningModule, checkpoint: dict) -> None:
    """Raise a ``CheckpointError`` when a checkpoint was saved by another stage or for other data.

    Called from the modules' ``on_load_checkpoint`` (resume, ``test --ckpt_path``), before the weights load.
    """
    hp = checkpoint.get("hyper_parameters", {})
    saved = str(hp.get("_class_path", "")).rsplit(".", 1)[-1]
    if saved and saved != type(module).__name__:
        raise CheckpointError(
            f"the checkpoint was saved by a {saved} stage but this config runs a {type(module).__name__}; pass "
            f"a {type(module).__name__} checkpoint (or the config of the stage that wrote it)"
        )
    wrong = [
        f"{key} {hp[key]} (this run: {module.hparams[key]})"
        for key in ("num_classes", "in_channels", "image_size")
        if key in hp and key in module.hparams and hp[key] != module.hparams[key]
    ]
    if wrong:
        raise CheckpointError(
            f"the checkpoint does not fit this run's data: {', '.join(wrong)}. Use a checkpoint trained on the "
            "same dataset, or the data config it was trained with."
        )
