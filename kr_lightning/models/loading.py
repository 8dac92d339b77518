"""Loading trained stages safely (``weights_only=True`` / safetensors) and checking that they fit the data."""

from __future__ import annotations

import contextvars
import inspect
import json
from pathlib import Path

import lightning as L
import torch

from kr_lightning.errors import CheckpointError, MissingInputError
from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.generator import DiffusionGenerator
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline

OLD_EXPORT_FILE = "kr_generator.json"  # the hand-made export layout used before diffusers' model_index.json


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


def load_generator(path: str | Path, device: torch.device | str = "cpu") -> ClassConditionalPipeline:
    """A trained generator as a pipeline, from a ``DiffusionGenerator`` checkpoint (``.ckpt``) or an export folder.

    Checkpoints are read with ``torch.load(weights_only=True)`` and exports with safetensors: neither runs code
    from the file. A checkpoint's ``state_dict`` holds the EMA weights when the run used ``EMAWeightAveraging``.
    The UNet is returned in eval mode without gradients.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is not a generator checkpoint or export, or is an export in the old layout.
    """
    path = Path(path)
    if path.is_dir():
        pipe = _from_export(path)
    elif path.is_file():
        pipe = _from_checkpoint(path)
    else:
        raise MissingInputError(
            f"generator not found: {path} (expected a DiffusionGenerator .ckpt or an export folder)"
        )
    pipe.unet.eval().requires_grad_(False)
    return pipe.to(device)


def _from_export(folder: Path) -> ClassConditionalPipeline:
    index = folder / "model_index.json"
    if not index.is_file():
        if (folder / OLD_EXPORT_FILE).is_file():
            ckpt = folder.parent / "checkpoints" / "last.ckpt"
            raise CheckpointError(
                f"{folder} is a generator export in the old kr_lightning layout ({OLD_EXPORT_FILE}); exports are now "
                'diffusers pipelines (model_index.json). Re-export it from its checkpoint: python -c "from '
                "kr_lightning.models.loading import load_generator; "
                f"load_generator('{ckpt}').export('{folder}')\", or pass the .ckpt instead"
            )
        raise CheckpointError(
            f"{folder} is not a kr_lightning generator export (expected model_index.json, unet/ and scheduler/); "
            "point to the `export` folder of a generator run or to one of its .ckpt files"
        )
    kind = json.loads(index.read_text()).get("_class_name")
    if kind != ClassConditionalPipeline.__name__:
        raise CheckpointError(f"{folder} holds a {kind} pipeline; expected a {ClassConditionalPipeline.__name__}")
    return ClassConditionalPipeline.from_pretrained(folder, use_safetensors=True, low_cpu_mem_usage=False)


def _from_checkpoint(path: Path) -> ClassConditionalPipeline:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    hp = ckpt.get("hyper_parameters", {}) if isinstance(ckpt, dict) else {}
    state = ckpt.get("state_dict", {}) if isinstance(ckpt, dict) else {}
    if not any(k.startswith("unet.") for k in state) or "block_out_channels" not in hp:
        kind = hp.get("_class_path", "unknown kind")
        raise CheckpointError(
            f"{path} is not a DiffusionGenerator checkpoint (it holds {kind}); pass the generator run's "
            "checkpoint (runs/<dataset>/generator/checkpoints/*.ckpt) or its export folder"
        )
    accepted = inspect.signature(DiffusionGenerator).parameters
    # A fresh context: built while LightningCLI instantiates another module (a generator loaded in its __init__),
    # save_hyperparameters would otherwise record that module's hyperparameters, which LightningCLI puts in a
    # context variable, instead of these.
    model = contextvars.Context().run(DiffusionGenerator, **{k: v for k, v in hp.items() if k in accepted})
    model.load_state_dict(state)
    pipe = model.frozen()
    pipe.register_to_config(_name_or_path=str(path))
    return pipe
