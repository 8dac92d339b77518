import pytest
import torch

from kr_lightning.errors import ConfigError
from kr_lightning.models import Student
from kr_lightning.models.losses import kd_loss
from kr_lightning.models.sample_weights import sample_weights, weights_anything


def batch(seed: int = 0, n: int = 12, k: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(n, k, generator=g), torch.randint(0, k, (n,), generator=g)


def test_defaults_weight_every_image_one():
    logits, y = batch()
    assert torch.equal(sample_weights(logits, y), torch.ones(len(y)))
    assert not weights_anything("none", 0.0, "none")
    for settings in (("confidence", 0.0, "none"), ("none", 0.5, "none"), ("none", 0.0, "teacher")):
        assert weights_anything(*settings)


def test_confidence_and_agreement_are_the_teachers_probabilities():
    logits, y = batch()
    probs = logits.softmax(-1)
    assert torch.allclose(sample_weights(logits, y, weighting="confidence"), probs.max(-1).values)
    assert torch.allclose(sample_weights(logits, y, weighting="agreement"), probs[torch.arange(len(y)), y])
    # an image the teacher puts in another class than the generator's weighs little under agreement only
    logits = torch.tensor([[5.0, 0.0], [0.0, 5.0]])
    y = torch.tensor([1, 1])
    agreement = sample_weights(logits, y, weighting="agreement")
    assert agreement[0] < 0.01 < 0.99 < agreement[1]
    assert torch.allclose(sample_weights(logits, y, weighting="confidence"), torch.full((2,), agreement[1].item()))


def test_min_confidence_drops_ambiguous_images_only():
    logits, y = batch(1, n=64)
    top = logits.softmax(-1).max(-1).values
    kept = sample_weights(logits, y, min_confidence=0.8) > 0
    assert torch.equal(kept, top >= 0.8)
    assert 0 < kept.sum() < len(y)  # the threshold bites on this batch, so the test can fail


def test_balance_gives_each_predicted_class_the_same_total():
    logits = torch.tensor([[4.0, 0.0, 0.0]] * 6 + [[0.0, 4.0, 0.0]] * 2)  # teacher: six of class 0, two of 1
    y = torch.zeros(8, dtype=torch.long)
    for weighting in ("none", "confidence", "agreement"):
        w = sample_weights(logits, y, weighting=weighting, balance="teacher")
        assert w[:6].sum() == pytest.approx(0.5) and w[6:].sum() == pytest.approx(0.5)
    # a class whose every image was filtered out takes no share
    logits[6:] = torch.tensor([0.0, 0.5, 0.2])  # two ambiguous images, both predicted class 1
    w = sample_weights(logits, y, weighting="agreement", min_confidence=0.5, balance="teacher")
    assert w[:6].sum() == pytest.approx(1.0) and torch.all(w[6:] == 0)


def test_weights_all_zero_give_zero_loss_and_gradient():
    logits, y = batch(2)
    student = logits.clone().requires_grad_(True)
    loss = kd_loss(student, logits.softmax(-1), y, alpha=0.5, weights=torch.zeros(len(y)))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(student.grad == 0)


def test_weighted_kd_loss_equals_the_loss_on_the_kept_images():
    logits, y = batch(3)
    student, teacher = torch.randn(len(y), 3), (logits / 4).softmax(-1)
    w = sample_weights(logits, y, min_confidence=0.7)
    keep = w > 0
    assert 0 < keep.sum() < len(y)
    kwargs = {"temperature": 4.0, "alpha": 0.3}
    weighted = kd_loss(student, teacher, y, weights=w, **kwargs)
    assert weighted.item() == pytest.approx(kd_loss(student[keep], teacher[keep], y[keep], **kwargs).item())
    ones = kd_loss(student, teacher, y, weights=torch.full((len(y),), 2.5), **kwargs)
    assert ones.item() == pytest.approx(kd_loss(student, teacher, y, **kwargs).item())


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")  # the loss logs train/kept; no Trainer here
def test_student_filters_through_its_loss_and_refuses_weights_without_teacher():
    torch.manual_seed(0)
    logits, y = batch(4, n=16, k=2)
    x = torch.randn(16, 1, 28, 28)
    plain, filtered = Student(temperature=2.0), Student(temperature=2.0, min_confidence=0.9)
    filtered.load_state_dict(plain.state_dict())
    plain.eval(), filtered.eval()  # batch-norm statistics would differ between the full batch and the subset
    keep = logits.softmax(-1).max(-1).values >= 0.9
    assert 0 < keep.sum() < 16
    expected = plain.loss((x[keep], logits[keep], y[keep]))
    assert filtered.loss((x, logits, y)).item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="hard-label"):
        Student(alpha=1.0, weighting="confidence")
    with pytest.raises(ConfigError, match="min_confidence"):
        Student(min_confidence=1.0)
