"""Synthetic training sets as pure functions of (generator, teacher, labels, rng)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from kr_lightning.errors import ConfigError
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.sampling import GuidanceInterval, SamplerKind


def balanced_labels(num_classes: int, n: int) -> torch.Tensor:
    """``n`` class indices, as equal as possible per class (the first ``n % K`` classes get one more), sorted."""
    counts = [n // num_classes + (1 if k < n % num_classes else 0) for k in range(num_classes)]
    return torch.repeat_interleave(torch.arange(num_classes), torch.tensor(counts))


def prior_labels(class_counts: np.ndarray, n: int) -> torch.Tensor:
    """``n`` class indices in proportion to ``class_counts`` (largest-remainder rounding), sorted."""
    share = np.asarray(class_counts, dtype=np.float64) * n / max(1, int(np.sum(class_counts)))
    counts = np.floor(share).astype(int)
    counts[np.argsort(-(share - counts), kind="stable")[: n - counts.sum()]] += 1
    return torch.repeat_interleave(torch.arange(len(counts)), torch.from_numpy(counts))


def shard_size(total: int, world_size: int) -> int:
    """Images each rank generates: an equal share of ``total`` (the remainder is dropped)."""
    if total < world_size:
        raise ConfigError(f"cannot split {total} synthetic images over {world_size} ranks")
    return total // world_size


def set_size(multiplier: float, n_real: int) -> int:
    """``round(multiplier * n_real)``, at least 1."""
    return max(1, int(math.floor(multiplier * n_real + 0.5)))


@torch.no_grad()
def teacher_logits(teacher: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Teacher logits ``(N, K)`` (float32) of images ``(N, C, H, W)``, in eval mode without gradients."""
    was_training = teacher.training
    teacher.eval()
    try:
        return torch.cat([teacher(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)])
    finally:
        teacher.train(was_training)


def synthesize(
    generator: ClassConditionalPipeline,
    labels: torch.Tensor,
    rng: torch.Generator,
    *,
    steps: int,
    guidance: float,
    sampler: SamplerKind,
    guidance_interval: GuidanceInterval | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in ``[-1, 1]`` of the classes ``labels`` (a thin, named wrapper of the pipeline)."""
    return generator(
        labels,
        generator=rng,
        num_inference_steps=steps,
        guidance_scale=guidance,
        sampler=sampler,
        guidance_interval=guidance_interval,
        batch_size=batch_size,
        progress=progress,
    ).images


def label_stats(logits: torch.Tensor, classes: torch.Tensor) -> dict[str, float]:
    """Mean teacher confidence, entropy (nats) and agreement with the generator's class, at temperature 1."""
    probs = logits.float().softmax(-1)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)
    return {
        "teacher_confidence": probs.max(-1).values.mean().item(),
        "teacher_entropy": entropy.mean().item(),
        "teacher_agreement": (probs.argmax(-1) == classes.to(probs.device)).float().mean().item(),
    }
