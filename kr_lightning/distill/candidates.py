"""One candidate of the selection stage: a generator and its sampling knobs, scored by quick students (val CAS).

:func:`score_candidate` trains the quick-student recipe on one static synthetic set of the candidate per seed;
:func:`candidate_quality` adds the generator quality metrics (:mod:`kr_lightning.quality`). The test split is
never read.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import lightning as L
from torch import nn

from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.datamodule import GKDDataModule
from kr_lightning.models.sampling import GuidanceInterval, knobs_name
from kr_lightning.models.student import Student
from kr_lightning.quality.command import generated_images
from kr_lightning.quality.scorer import QualityScorer


def checkpoint_epoch(path: str) -> int | None:
    """The epoch number in a ``gen-epochNNN.ckpt`` name."""
    match = re.search(r"epoch(\d+)", Path(path).stem)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a generator and its sampling knobs."""

    generator: str
    steps: int
    guidance: float
    sampler: str
    guidance_interval: GuidanceInterval | None = None

    @property
    def key(self) -> str:
        """Stable file name of this candidate's result (unchanged for candidates guided at every step)."""
        fields = {k: v for k, v in asdict(self).items() if not (k == "guidance_interval" and v is None)}
        digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]
        knobs = knobs_name(self.sampler, self.steps, self.guidance, self.guidance_interval)
        return f"{Path(self.generator).stem}-{knobs}-{digest}"


@dataclass(frozen=True)
class QuickStudent:
    """The recipe that scores a candidate (kept small: it runs once per candidate and seed)."""

    net: Callable[[int, int], nn.Module]
    labels: Literal["hard", "soft"]
    teacher_ckpt: str | None
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    multiplier: float
    class_balance: str
    seeds: list[int]
    accelerator: str
    gen_precision: str = "32-true"


def score_candidate(candidate: Candidate, real: ImageDataModule, recipe: QuickStudent, seed: int) -> dict[str, Any]:
    """Train ``recipe`` on one static synthetic set of ``candidate`` per seed; mean final val accuracy / AUC."""
    data = GKDDataModule(
        **real.dataset_kwargs(),
        generator=candidate.generator,
        teacher_ckpt=recipe.teacher_ckpt if recipe.labels == "soft" else None,
        regenerate_every=0,
        multiplier=recipe.multiplier,
        class_balance=recipe.class_balance,  # type: ignore[arg-type]
        steps=candidate.steps,
        guidance=candidate.guidance,
        sampler=candidate.sampler,  # type: ignore[arg-type]
        guidance_interval=None if candidate.guidance_interval is None else list(candidate.guidance_interval),
        batch_size=recipe.batch_size,
        gen_precision=recipe.gen_precision,  # type: ignore[arg-type]
        seed=seed,
    )
    runs = []
    for student_seed in recipe.seeds:
        L.seed_everything(student_seed, verbose=False)
        student = Student(
            num_classes=real.num_classes,
            in_channels=real.in_channels,
            image_size=real.image_size,
            net=recipe.net,
            lr=recipe.lr,
            weight_decay=recipe.weight_decay,
            alpha=1.0 if recipe.labels == "hard" else 0.0,
        )
        trainer = L.Trainer(
            max_epochs=recipe.epochs,
            accelerator=recipe.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            check_val_every_n_epoch=recipe.epochs,
            reload_dataloaders_every_n_epochs=1,
        )
        trainer.fit(student, datamodule=data)
        metrics = trainer.callback_metrics
        runs.append({"seed": student_seed, "val_acc": float(metrics["val/acc"]), "val_auc": float(metrics["val/auc"])})
    gen_seconds = data.last_stats["gen_seconds"]
    return {
        **asdict(candidate),
        "epoch": checkpoint_epoch(candidate.generator),
        "val_acc": sum(r["val_acc"] for r in runs) / len(runs),
        "val_auc": sum(r["val_auc"] for r in runs) / len(runs),
        "runs": runs,
        "gen_seconds": gen_seconds,
        "teacher_agreement": data.last_stats.get("teacher_agreement"),
    }


def candidate_quality(
    candidate: Candidate,
    scorer: QualityScorer,
    n: int,
    seed: int,
    *,
    bf16: bool = False,
) -> dict[str, Any]:
    """The quality metrics of ``n`` class-balanced images of ``candidate`` (the same noise for every candidate).

    The generator runs where the scorer's teacher does, under bfloat16 autocast with ``bf16``.
    """
    images, labels, _ = generated_images(
        candidate.generator,
        scorer.num_classes,
        n,
        steps=candidate.steps,
        guidance=candidate.guidance,
        sampler=candidate.sampler,  # type: ignore[arg-type]
        guidance_interval=candidate.guidance_interval,
        seed=seed,
        device=scorer.device,
        bf16=bf16,
    )
    return scorer.score(images, labels)
