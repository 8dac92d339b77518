"""ValPredictions: keep every epoch's class probabilities on the val split (``val_predictions.npz``).

A checkpoint is selected on a small val split (BreastMNIST: 78 images, one image is 0.013 of accuracy), so which
rule picks the epoch (highest accuracy, lowest loss, last) matters as much as many training knobs. With every
epoch's val probabilities saved, a rule can be judged on val alone: pick the epoch on one half of val, score it on
the other (:mod:`kr_lightning.checkpoint_rules`). Training is not touched: the callback only reads the logits the
validation step returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from kr_lightning import artifacts
from kr_lightning.runs import run_dir

FILE = "val_predictions.npz"


def load_val_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """``epochs`` ``(E,)``, ``probs`` ``(E, N, K)`` and ``labels`` ``(N,)`` of a ``val_predictions.npz``.

    Raises:
        FileNotFoundError: with the callback to add, when the file is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: fit the run with the callback that writes it, "
            "--trainer.callbacks+=kr_lightning.callbacks.ValPredictions"
        )
    with np.load(path) as data:
        return {"epochs": data["epochs"], "probs": data["probs"], "labels": data["labels"].astype(np.int64)}


class ValPredictions(Callback):
    """After every validation, append the epoch's val probabilities to ``<run>/val_predictions.npz`` (rank 0).

    Probabilities are gathered over ranks in the val loader's order (under DDP the sampler may repeat a few images
    to even the shards, as it does for Lightning's own val metrics). A resumed run keeps the epochs before the one
    it restarts from and continues the file. The sanity check is not recorded.
    """

    def __init__(self) -> None:
        self._probs: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new epoch's lists."""
        self._probs, self._labels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,  # noqa: ANN401 - what validation_step returns: the logits
        batch: Any,  # noqa: ANN401
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's probabilities and labels."""
        if not isinstance(outputs, torch.Tensor):
            raise TypeError(
                f"ValPredictions needs validation_step to return the logits, got {type(outputs).__name__}: "
                "use it with a kr_lightning classifier (Teacher, Student)"
            )
        self._probs.append(outputs.detach().float().softmax(-1).cpu())
        self._labels.append(batch[-1].detach().cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather over ranks and rewrite the file with this epoch appended (epochs from a restart replaced)."""
        if trainer.sanity_checking or not self._probs:
            return
        probs, labels = torch.cat(self._probs), torch.cat(self._labels)
        if trainer.world_size > 1:
            probs = pl_module.all_gather(probs).flatten(0, 1).cpu()
            labels = pl_module.all_gather(labels).flatten(0, 1).cpu()
        if not trainer.is_global_zero:
            return
        path = run_dir(trainer) / FILE
        epoch = trainer.current_epoch
        epochs, stack = np.zeros(0, dtype=np.int64), np.zeros((0, *probs.shape), dtype=np.float32)
        if path.is_file():
            earlier = load_val_predictions(path)
            keep = earlier["epochs"] < epoch
            if earlier["probs"].shape[1:] == tuple(probs.shape):
                epochs, stack = earlier["epochs"][keep], earlier["probs"][keep]
        artifacts.write_npz(
            path,
            epochs=np.append(epochs, epoch).astype(np.int64),
            probs=np.concatenate([stack, probs.numpy()[None]]).astype(np.float32),
            labels=labels.numpy().astype(np.int64),
        )
