"""Loading trained stages safely (``weights_only=True``) and checking that they fit the data."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from kr_lightning.errors import CheckpointError, MissingInputError
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
        raise MissingInputError(f"classifier checkpoint not found: {path}; train the teacher stage first")
    try:
        model = L.LightningModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch and Lightning raise many types for corrupt or foreign files
        raise CheckpointError(f"cannot load classifier checkpoint {path}: {err}") from err
    if not isinstance(model, ClassifierModule):
        raise CheckpointError(
            f"{path} is a {type(model).__name__} checkpoint; expected a Teacher/Student checkpoint "
            "(runs/<dataset>/teacher/checkpoints/best.ckpt)"
        )
    return model.eval().requires_grad_(False).to(device)
