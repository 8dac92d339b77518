"""The generator memorisation part of the audit: the deployed student's first synthetic set vs the real splits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kr_lightning.data.arrays import to_tensor
from kr_lightning.distill.plan import SyntheticPlan
from kr_lightning.models.loading import load_classifier
from kr_lightning.privacy.memorisation import closest_pairs_figure, memorisation_summary
from kr_lightning.privacy.signals import AuditPool
from kr_lightning.stages import build_stage


@torch.no_grad()
def _features(model: Any, x: torch.Tensor) -> np.ndarray:  # noqa: ANN401 - a ClassifierModule
    """Penultimate embedding of the classifier's backbone."""
    return torch.cat([model.net.features(x[i : i + 512]).float() for i in range(0, len(x), 512)]).numpy()


def memorisation_report(
    student_recipe: Path,
    dataset: Mapping[str, Any],
    plan: SyntheticPlan,
    pool: AuditPool,
    teacher_ckpt: Path,
    folder: Path,
    cache: Path,
) -> dict[str, Any]:
    """Nearest-neighbour distances of synthetic set 0 (pixels and teacher features) and ``closest_pairs.png``.

    ``plan`` is the deployed student's: set 0 is then the very set it trained on first.
    """
    images_only = plan.data_overrides() | {"cache_dir": str(cache), "teacher_ckpt": None}
    overrides = {"data": {"init_args": images_only}, "trainer": {"default_root_dir": str(folder / "memorisation")}}
    data = build_stage(student_recipe, dataset, seed=plan.seed, overrides=overrides, quiet=True).datamodule
    data.setup("fit")
    synthetic = data.images(0, 0, 1).cpu()
    train = to_tensor(pool.images[pool.origin == "train"])
    heldout = to_tensor(pool.images[pool.origin == "test"])
    rng = np.random.default_rng(plan.seed)
    teacher = load_classifier(teacher_ckpt)
    closest_pairs_figure(folder / "closest_pairs.png", synthetic, train)
    return {
        "synthetic_set": "set 0 of the deployed student (the same noise seed, counts and sampling knobs)",
        "pixels": memorisation_summary(
            synthetic.flatten(1).numpy(), train.flatten(1).numpy(), heldout.flatten(1).numpy(), rng
        ),
        "teacher_features": memorisation_summary(
            _features(teacher, synthetic), _features(teacher, train), _features(teacher, heldout), rng
        ),
        "figure": str(folder / "closest_pairs.png"),
    }
