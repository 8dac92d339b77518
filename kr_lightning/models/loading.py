"""Loading trained stages safely (``weights_only=True``) and checking that they fit the data."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from kr_lightning.data.info import DatasetInfo
from kr_lightning.models.classifier import ClassifierModule


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> ClassifierModule:
    """A trained Teacher / Student checkpoint in eval mode without gradients.

    The file is read with ``weights_only=True`` (no code from the file runs); Lightning rebuilds the module from
    the hyperparameters saved by LightningCLI.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a readable classifier checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint not found: {path}; train the teacher stage first")
    try:
        model = L.LightningModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and Lightning raise many types for corrupt or foreign files
        raise ValueError(f"cannot load classifier checkpoint {path}: {err}") from err
    if not isinstance(model, ClassifierModule):
        raise ValueError(
            f"{path} is a {type(model).__name__} checkpoint; expected a Teacher/Student checkpoint "
            "(runs/<dataset>/teacher/checkpoints/best.ckpt)"
        )
    return model.eval().requires_grad_(False).to(device)


def check_fits_data(
    what: str, source: str, num_classes: int, in_channels: int, image_size: int, info: DatasetInfo
) -> None:
    """Raise a ``ValueError`` naming every property of a trained model that differs from the dataset's."""
    found = {"classes": num_classes, "channels": in_channels, "image size": image_size}
    expected = {"classes": info.num_classes, "channels": info.in_channels, "image size": info.image_size}
    wrong = [f"{k} {found[k]} (data: {expected[k]})" for k in found if found[k] != expected[k]]
    if wrong:
        raise ValueError(
            f"the {what} at {source} does not fit dataset {info.flag!r}: {', '.join(wrong)}. "
            f"Use the {what} trained on this dataset."
        )
