"""Pure functions scoring a set of synthetic images against real ones in a fixed feature space.

* :func:`class_fidelity`: how often a classifier (the teacher) gives a synthetic image the class it was generated
  for, overall and per class, with the classifier's mean confidence.
* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature sets (torchmetrics'
  ``FrechetInceptionDistance`` with the given feature extractor instead of Inception).
* :func:`prdc_scores`: precision, recall, density and coverage (Naeem et al., ICML 2020, the ``prdc`` package),
  from k-nearest-neighbour balls in the feature space.

All values depend on the feature space and on the number of samples; compare them only with values computed in the
same feature space at the same sample count (the scorer prints the real-vs-real reference beside each).
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


class FeatureExtractor(nn.Module):
    """A frozen classifier's penultimate embedding ``net.features(x)`` as torchmetrics expects a feature module.

    Args:
        net: Backbone with a ``features(x) -> (N, d)`` method (every kr_lightning backbone has one).
        num_features: ``d``.
    """

    def __init__(self, net: nn.Module, num_features: int) -> None:
        super().__init__()
        self.net = net
        self.num_features = num_features

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, d)`` float features of images ``(N, C, H, W)`` in ``[-1, 1]``."""
        return self.net.features(x).flatten(1).float()


def frechet_distance(
    extractor: FeatureExtractor, real: torch.Tensor, fake: torch.Tensor, batch_size: int = 512
) -> float:
    """Fréchet distance between the ``extractor`` features of ``real`` and ``fake`` images.

    torchmetrics' ``FrechetInceptionDistance`` with the given extractor; it accumulates in float64.
    Both sets need at least 2 images. Images go to the extractor unchanged (``[-1, 1]`` floats).
    """
    metric = FrechetInceptionDistance(
        feature=extractor, normalize=True, input_img_size=tuple(real.shape[1:]), reset_real_features=True
    )
    for images, is_real in ((real, True), (fake, False)):
        for start in range(0, len(images), batch_size):
            metric.update(images[start : start + batch_size], real=is_real)
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
