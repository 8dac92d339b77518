"""Pure functions scoring a set of synthetic images against real ones in a fixed feature space.

* :func:`class_fidelity`: how often a classifier (the teacher) gives a synthetic image the class it was generated
  for, overall and per class, with the classifier's mean confidence.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (torchmetrics'
  ``FrechetInceptionDistance`` over given features instead of Inception's).
* :func:`prdc_scores`: precision, recall, density and coverage (Naeem et al., ICML 2020, the ``prdc`` package),
  from k-nearest-neighbour balls in the feature space.
* :func:`high_frequency_energy`: the images' fine texture in pixel space (no feature network); few-step samplers
  return images smoother than the real ones, and classifiers trained on real images rely on that texture.

The feature-space values depend on the feature space and on the number of samples; compare them only with values
computed in the same feature space at the same sample count (the scorer prints the real-vs-real reference beside
each).
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from prdc import compute_prdc
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance


def class_fidelity(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict[str, float | list[float]]:
    """Agreement of ``argmax(logits)`` with the conditioning ``labels``, overall and per class.

    Returns:
        ``fidelity`` (overall agreement), ``fidelity_per_class`` (``nan`` for a class without samples),
        ``confidence`` (mean max softmax probability).
    """
    probs = logits.float().softmax(-1)
    hit = (probs.argmax(-1) == labels.to(probs.device)).float()
    per_class = [
        hit[labels == k].mean().item() if bool((labels == k).any()) else float("nan") for k in range(num_classes)
    ]
    return {
        "fidelity": hit.mean().item(),
        "fidelity_per_class": per_class,
        "confidence": probs.max(-1).values.mean().item(),
    }


class _Identity(nn.Module):
    """Passes precomputed ``(N, d)`` features through, as torchmetrics expects a feature module."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two ``(N, d)`` feature sets (each N >= 2).

    torchmetrics' ``FrechetInceptionDistance`` (float64 accumulation) over already computed features: its
    feature module is the identity, so each image goes through the feature network once, not once per call.
    """
    dim = real_features.shape[1]
    metric = FrechetInceptionDistance(feature=_Identity(dim), normalize=True, input_img_size=(dim,))
    metric.update(torch.as_tensor(real_features, dtype=torch.float32), real=True)
    metric.update(torch.as_tensor(fake_features, dtype=torch.float32), real=False)
    return float(metric.compute())


def prdc_scores(real_features: np.ndarray, fake_features: np.ndarray, nearest_k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features`` (``prdc``).

    Both sets need more than ``nearest_k`` rows.
    """
    with contextlib.redirect_stdout(io.StringIO()):  # prdc prints the set sizes
        scores = compute_prdc(
            real_features=np.asarray(real_features, dtype=np.float32),
            fake_features=np.asarray(fake_features, dtype=np.float32),
            nearest_k=nearest_k,
        )
    return {k: float(v) for k, v in scores.items()}


def high_frequency_energy(images: torch.Tensor) -> float:
    """Mean squared difference of neighbouring pixels, along rows plus along columns, of ``(N, C, H, W)`` images.

    In ``[-1, 1]`` pixel units: 0 for flat images, ``4 sd^2`` for independent pixel noise of standard deviation
    ``sd``. Real BreastMNIST images score about 0.032, DPM-Solver++ 10-step samples about 0.017
    (experiments/README.md, "Synthetic images are too smooth").
    """
    x = images.float()
    rows = (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean()
    cols = (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()
    return float(rows + cols)
