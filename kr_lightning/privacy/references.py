"""Training the reference (shadow) runs of the privacy audit with the deployed stages' own recipes.

A reference run repeats the recipe of a deployed stage (built by :func:`kr_lightning.stages.build_stage` from the
same recipe, dataset and plan objects) on a different training set: the images marked IN for it in the keep
matrix. Checkpoint selection included: a recipe whose ``ModelCheckpoint`` monitors a val metric keeps its best
checkpoint, as the deployed run did, on the same val split (which is not in the audit pool). The accuracy floor
that retrains a failed reference is measured on val too, never on audit images.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from lightning.pytorch.callbacks import ModelCheckpoint

from kr_lightning import artifacts
from kr_lightning.data.arrays import Split, to_tensor
from kr_lightning.distill.plan import SyntheticPlan
from kr_lightning.errors import TrainingError
from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.loading import load_classifier
from kr_lightning.privacy.signals import AuditPool, view_logits
from kr_lightning.stages import KRCLI, build_stage, deep_merge


def _callbacks_in(recipe: Path, run: Path) -> list[Any] | None:
    """The recipe's callbacks with every checkpoint folder moved into ``run``.

    A deployed run's ``config.yaml`` names its own ``checkpoints/`` folder: a reference run must never write there.
    """
    callbacks = ((yaml.safe_load(Path(recipe).read_text()) or {}).get("trainer") or {}).get("callbacks")
    if not callbacks:
        return None
    moved = []
    for callback in callbacks:
        if isinstance(callback, dict) and "dirpath" in (callback.get("init_args") or {}):
            callback = {**callback, "init_args": {**callback["init_args"], "dirpath": str(run / "checkpoints")}}
        moved.append(callback)
    return moved


def _build(recipe: Path, dataset: Mapping[str, Any], run: Path, seed: int, overrides: Mapping[str, Any]) -> KRCLI:
    """A reference stage: the recipe on ``dataset`` in folder ``run`` (checkpoints included), quiet."""
    layout: dict[str, Any] = {"trainer": {"default_root_dir": str(run)}}
    if (callbacks := _callbacks_in(recipe, run)) is not None:
        layout["trainer"]["callbacks"] = callbacks
    return build_stage(recipe, dataset, seed=seed, overrides=deep_merge(layout, overrides), quiet=True)


def _fit(stage: KRCLI) -> Path | None:
    """Fit as the recipe says; the best checkpoint of its monitoring ``ModelCheckpoint`` (``None``: no selection)."""
    trainer = stage.trainer
    trainer.fit(stage.model, datamodule=stage.datamodule)
    selected = [cb for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint) and cb.monitor]
    return Path(selected[0].best_model_path) if selected and selected[0].best_model_path else None


def train_classifier(
    recipe: Path,
    dataset: Mapping[str, Any],
    run: Path,
    seed: int,
    train: Split | None,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Train a teacher (``train``: its real training set) or a student (``train=None``); save ``model.ckpt``."""
    # a deployed run's config.yaml holds the data seed it was filled with; a reference draws its own shuffling and
    # augmentation from its own seed (students keep the plan's seed, given in ``overrides``: the same sets)
    fresh = deep_merge({"data": {"init_args": {"seed": None}}}, overrides or {})
    stage = _build(recipe, dataset, run, seed, fresh)
    if train is not None:
        stage.datamodule.set_train(train)
    best = _fit(stage)
    if best is not None:
        return best
    path = run / "model.ckpt"
    stage.trainer.save_checkpoint(path, weights_only=True)
    return path


def train_generator(recipe: Path, dataset: Mapping[str, Any], run: Path, seed: int, train: Split) -> Path:
    """Train a generator on ``train`` and export it (EMA weights) to ``<run>/export``."""
    stage = _build(recipe, dataset, run, seed, {"data": {"init_args": {"seed": None}}})
    stage.datamodule.set_train(train)
    stage.trainer.fit(stage.model, datamodule=stage.datamodule)
    return stage.model.frozen().export(run / "export")


@torch.no_grad()
def accuracy(model: ClassifierModule, split: Split) -> float:
    """Plain accuracy of ``model`` on ``split``."""
    model.eval()
    device = next(model.parameters()).device
    x = to_tensor(split.images)
    predictions = torch.cat([model(x[i : i + 512].to(device)).argmax(-1).cpu() for i in range(0, len(x), 512)])
    return float((predictions.numpy() == split.labels).mean())


@dataclass(frozen=True)
class ReferenceRecipe:
    """How every reference run of one audit is trained: the deployed stages' recipes, dataset and student plan.

    Attributes:
        teacher: Teacher recipe.
        dataset: The data module's dataset options (``ImageDataModule.dataset_kwargs()``).
        student: Student recipe (``None``: the student is not audited).
        generator: Generator recipe (mode ``b`` only).
        plan: The deployed student's synthetic sets (reference students draw the same sizes, knobs and noise).
        mode: ``a`` (generator fixed: reference students reuse the deployed generator and its cached sets) or
            ``b`` (each reference trains its own generator).
        cache: Mode ``a``: where the deployed student's synthetic sets are cached.
        held_out: The val split: reference checkpoints are selected on it and the floor is measured on it.
        floor: Val accuracy floor of every reference model.
        retries: Retraining attempts per reference model.
        views: Query views (``shift``, ``hflip``) of :func:`kr_lightning.privacy.signals.view_logits`.
    """

    teacher: Path
    dataset: Mapping[str, Any]
    student: Path | None
    generator: Path | None
    plan: SyntheticPlan | None
    mode: str
    cache: Path
    held_out: Split
    floor: float
    retries: int
    views: Mapping[str, Any]


def train_until_accurate(train: Any, floor: float, retries: int, held_out: Split) -> tuple[Path, float, int]:  # noqa: ANN401
    """Call ``train(attempt)`` until the model reaches ``floor`` accuracy on ``held_out``."""
    for attempt in range(retries + 1):
        ckpt = train(attempt)
        acc = accuracy(load_classifier(ckpt), held_out)
        if acc >= floor:
            return ckpt, acc, attempt
        print(f"mia: {ckpt} reached {acc:.3f} < min_accuracy {floor}; retraining (attempt {attempt + 1})")
    raise TrainingError(
        f"a reference model stayed below min_accuracy={floor} after {retries + 1} attempts ({ckpt}: {acc:.3f}); "
        "lower min_accuracy or fix the training recipe"
    )


def run_reference(
    i: int, unit: Path, keep_row: np.ndarray, pool: AuditPool, recipe: ReferenceRecipe, seed: int
) -> None:
    """Train reference run ``i`` on its IN images and save its logits on the pool (one unit of work)."""
    train, held_out = pool.subset(keep_row), recipe.held_out
    base = seed * 1000 + i
    result: dict[str, Any] = {"keep": keep_row}
    generator = None
    if recipe.mode == "b":
        assert recipe.generator is not None, "mode b needs the generator recipe"
        generator = train_generator(recipe.generator, recipe.dataset, unit / "generator", base, train)
    teacher, result["teacher_acc"], result["teacher_attempts"] = train_until_accurate(
        lambda a: train_classifier(recipe.teacher, recipe.dataset, unit / "teacher", base + 100_000 * a, train),
        recipe.floor,
        recipe.retries,
        held_out,
    )
    result["teacher"] = view_logits(load_classifier(teacher), pool.images, **recipe.views)
    if recipe.student is not None and recipe.plan is not None:
        data = recipe.plan.data_overrides() | {"teacher_ckpt": str(teacher)}
        data |= {"cache_dir": str(recipe.cache)} if recipe.mode == "a" else {"generator": str(generator)}
        student = recipe.student
        student_ckpt, result["student_acc"], result["student_attempts"] = train_until_accurate(
            lambda a: train_classifier(
                student, recipe.dataset, unit / "student", base + 100_000 * a, None, {"data": {"init_args": data}}
            ),
            recipe.floor,
            recipe.retries,
            held_out,
        )
        result["student"] = view_logits(load_classifier(student_ckpt), pool.images, **recipe.views)
    result["seed"] = np.array(base)
    artifacts.write_npz(unit / "logits.npz", **{k: np.asarray(v) for k, v in result.items()})
    print(
        f"mia: reference {i}: teacher acc {result['teacher_acc']:.3f}, student acc {result.get('student_acc', 0):.3f}"
    )
