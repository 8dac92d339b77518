"""What a finished stage leaves in its run folder besides checkpoints and logs."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from kr_lightning import artifacts
from kr_lightning.errors import DataError, MissingInputError


def run_dir(trainer: L.Trainer) -> Path:
    """The folder the trainer logs into (``trainer.log_dir``, else ``default_root_dir``), safe on rank 0 alone.

    ``trainer.log_dir`` broadcasts rank 0's answer: a collective call, which hangs DDP when only rank 0 makes it
    (the run record, sample grids and test results are written by rank 0 only). This is the same folder, computed
    by the calling process without talking to the others.
    """
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = logger.log_dir if isinstance(logger, (CSVLogger, TensorBoardLogger)) else getattr(logger, "save_dir", None)
    return Path(folder or trainer.default_root_dir)


def _number(value: Any) -> Any:  # noqa: ANN401 - metric values are tensors or floats
    return value.item() if isinstance(value, torch.Tensor) else value


@rank_zero_only
def record_test_results(trainer: L.Trainer, model: L.LightningModule, ckpt_path: str | None) -> None:
    """Write ``test_metrics.json`` and, for classifiers, ``test_predictions.npz`` (``probs`` (N, K), ``labels``)."""
    out = run_dir(trainer)
    metrics = {k: _number(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
    probs = getattr(model, "test_probs", None)
    result: dict[str, Any] = {"ckpt_path": ckpt_path, "metrics": metrics}
    if probs:
        result["medmnist_evaluator"] = _medmnist_evaluator(trainer.datamodule, torch.cat(probs).numpy())
    artifacts.write_json(out / "test_metrics.json", result)
    if not probs:
        return
    if trainer.world_size > 1:
        rank_zero_warn("test predictions are written from rank 0 only; run `test` with --trainer.devices=1")
    labels = torch.cat([y for _, y in trainer.datamodule.test_dataloader()]) if trainer.datamodule else None
    probs_np = torch.cat(probs).numpy()
    arrays = {"probs": probs_np}
    if labels is not None and len(labels) == len(probs_np):
        arrays["labels"] = labels.numpy()
    artifacts.write_npz(out / "test_predictions.npz", **arrays)


def _medmnist_evaluator(datamodule: Any, probs: Any) -> dict[str, float] | None:  # noqa: ANN401
    """``medmnist.Evaluator``'s ACC / AUC of the same test predictions, for MedMNIST data modules."""
    from kr_lightning.data.datamodule import ImageDataModule

    if not isinstance(datamodule, ImageDataModule) or datamodule.info.source != "medmnist":
        return None
    from medmnist import Evaluator

    size = None if datamodule.size == 28 else datamodule.size
    evaluator = Evaluator(datamodule.flag, "test", size=size, root=str(datamodule.data_root))
    auc, acc = evaluator.evaluate(probs)
    return {"acc": float(acc), "auc": float(auc)}


@rank_zero_only
def mark_finished(folder: Path, trainer: L.Trainer) -> None:
    """Add the end time, epochs and checkpoint paths to ``run.json`` (the pipeline's "stage done" marker)."""
    record = read_json(folder / "run.json") if (folder / "run.json").is_file() else {}
    best = next((cb.best_model_path for cb in trainer.checkpoint_callbacks if cb.best_model_path), None)
    now = datetime.now(timezone.utc)
    started = record.get("started")
    record |= {
        "finished": now.isoformat(timespec="seconds"),
        "wall_seconds": round(
            record.get("earlier_seconds", 0.0) + (now - datetime.fromisoformat(started)).total_seconds(), 1
        )
        if started
        else None,
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_ckpt": best,
    }
    artifacts.write_json(folder / "run.json", record)


def read_json(path: str | Path) -> dict[str, Any]:
    """Read a JSON artifact, naming the file when it is missing or corrupt."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise MissingInputError(f"expected {path}; run the stage that writes it first") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it and rerun the stage that writes it") from err
