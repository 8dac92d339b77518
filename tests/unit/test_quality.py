"""Quality metrics: known values on constructed features, and the scorer's reference and matched values."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from kr_lightning.errors import ConfigError
from kr_lightning.models.teacher import Teacher
from kr_lightning.quality import QualityScorer, class_fidelity, frechet_distance, high_frequency_energy, prdc_scores


class PixelNet(nn.Module):
    """features = the flattened pixels; logits = mean brightness vs 0 (class 1 when bright)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([-m, m], 1) * 10


def test_class_fidelity_overall_per_class_and_confidence():
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0], [5.0, 0.0], [5.0, 0.0]])
    result = class_fidelity(logits, torch.tensor([0, 1, 1, 1]), num_classes=3)
    assert result["fidelity"] == pytest.approx(0.5)
    assert result["fidelity_per_class"][:2] == pytest.approx([1.0, 1 / 3])
    assert math.isnan(result["fidelity_per_class"][2])  # no samples of class 2
    assert result["confidence"] == pytest.approx(torch.tensor([5.0, 0.0]).softmax(0)[0].item())


def test_frechet_distance_of_a_shift_is_the_squared_mean_difference():
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    # same covariance, every feature shifted by 0.5: FD = ||mu_a - mu_b||^2 = 4 * 0.25
    assert frechet_distance(x, x + 0.5) == pytest.approx(1.0, rel=1e-4)


def test_prdc_identical_and_disjoint_sets():
    a = np.random.default_rng(0).normal(size=(200, 3))
    same = prdc_scores(a, a, nearest_k=5)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc_scores(a, a + 100.0, nearest_k=5)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0


def make_scorer(n_train: int = 120, n_val: int = 30) -> QualityScorer:
    rng = torch.Generator().manual_seed(1)

    def split(n):
        y = torch.arange(n) % 2
        x = (y.float() * 2 - 1).view(-1, 1, 1, 1) * 0.5 + 0.3 * torch.randn(n, 1, 4, 4, generator=rng)
        return x.clamp(-1, 1), y

    teacher = Teacher(num_classes=2, in_channels=1, image_size=4, net=PixelNet)
    return QualityScorer(teacher, split(n_train), split(n_val), subsets=3)


def test_high_frequency_energy_of_flat_noisy_and_smoothed_images():
    g = torch.Generator().manual_seed(0)
    assert high_frequency_energy(torch.full((4, 1, 8, 8), 0.3)) == 0.0  # flat
    noise = 0.1 * torch.randn(64, 1, 32, 32, generator=g)
    assert high_frequency_energy(noise) == pytest.approx(4 * 0.1**2, rel=0.03)  # 2 sd^2 per axis, two axes
    smoothed = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1)
    assert high_frequency_energy(smoothed) < 0.25 * high_frequency_energy(noise)
    ramp = torch.linspace(-1, 1, 8).repeat(8, 1)[None, None]  # steps of 2/7 along columns only
    assert high_frequency_energy(ramp) == pytest.approx((2 / 7) ** 2)


def test_scorer_reference_is_the_val_split_and_a_copy_of_train_scores_perfectly():
    scorer = make_scorer()
    ref = scorer.reference()
    assert ref["n"] == 30
    val_x, val_y = scorer.val_x, scorer.val_y
    expected = (PixelNet()(val_x).argmax(1) == val_y).float().mean().item()
    assert ref["fidelity"] == pytest.approx(expected)
    assert ref["hf_energy"] == pytest.approx(high_frequency_energy(val_x))
    copy = scorer.score(scorer.train_x, scorer.train_y)
    assert copy["n"] == 120 and copy["fd"] == pytest.approx(0.0, abs=1e-6)
    assert copy["precision"] == copy["recall"] == copy["coverage"] == 1.0
    assert copy["coverage_per_class"] == [1.0, 1.0]
    assert copy["hf_energy"] == pytest.approx(high_frequency_energy(scorer.train_x))
    matched = copy["matched"]
    assert matched["n"] == 30 and matched["fd"] > 0.0  # a 30-image subset is not the full train set
    assert set(matched["sd"]) == {"fd", "precision", "recall", "density", "coverage"}


def test_scorer_separates_a_collapsed_generator_from_a_faithful_one():
    scorer = make_scorer()
    x, y = scorer.train_x, scorer.train_y
    collapsed = torch.where(y.view(-1, 1, 1, 1) == 1, x[y == 1][:1], x[y == 0][:1]).expand_as(x).clone()
    good, bad = scorer.score(x, y), scorer.score(collapsed, y)
    assert bad["fidelity"] == good["fidelity"] == 1.0  # fidelity alone rewards collapse ...
    assert bad["coverage"] < 0.2 < good["coverage"] and bad["matched"]["fd"] > good["matched"]["fd"]  # ... these not


def test_scorer_needs_as_many_synthetic_images_as_the_val_split():
    scorer = make_scorer()
    with pytest.raises(ConfigError, match="at least as many"):
        scorer.score(scorer.train_x[:10], scorer.train_y[:10])
