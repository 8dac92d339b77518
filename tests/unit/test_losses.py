import pytest
import torch
import torch.nn.functional as F

from kr_lightning.models.losses import kd_loss, soft_cross_entropy


def test_soft_ce_equals_hard_ce_on_one_hot():
    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    assert soft_cross_entropy(logits, F.one_hot(y, 4).float()) == pytest.approx(F.cross_entropy(logits, y).item())


def test_soft_ce_is_kl_plus_teacher_entropy():
    logits, teacher = torch.randn(5, 3), torch.randn(5, 3).softmax(-1)
    kl = F.kl_div(F.log_softmax(logits, -1), teacher, reduction="batchmean")
    entropy = -(teacher * teacher.log()).sum(-1).mean()
    assert soft_cross_entropy(logits, teacher).item() == pytest.approx((kl + entropy).item(), rel=1e-5)


def test_kd_gradient_vanishes_when_student_matches_teacher():
    logits = torch.randn(4, 3, requires_grad=True)
    teacher = (logits.detach() / 2.0).softmax(-1)
    kd_loss(logits, teacher, temperature=2.0).backward()
    assert logits.grad.abs().max() < 1e-6


def test_kd_temperature_squared_factor():
    logits, teacher_logits = torch.randn(8, 3), torch.randn(8, 3)
    t = 4.0
    expected = soft_cross_entropy(logits / t, (teacher_logits / t).softmax(-1)) * t * t
    assert kd_loss(logits, (teacher_logits / t).softmax(-1), temperature=t).item() == pytest.approx(expected.item())


def test_kd_alpha_mixes_hard_labels():
    logits, teacher = torch.randn(8, 3), torch.randn(8, 3).softmax(-1)
    y = torch.randint(0, 3, (8,))
    mixed = kd_loss(logits, teacher, y, alpha=0.25)
    expected = 0.75 * soft_cross_entropy(logits, teacher) + 0.25 * F.cross_entropy(logits, y)
    assert mixed.item() == pytest.approx(expected.item())
    assert kd_loss(logits, teacher, y, alpha=1.0).item() == pytest.approx(F.cross_entropy(logits, y).item())
    with pytest.raises(ValueError, match="hard_labels"):
        kd_loss(logits, teacher, alpha=0.5)


def test_label_smoothing_moves_targets_towards_uniform():
    logits = torch.zeros(2, 4)
    teacher = F.one_hot(torch.tensor([0, 1]), 4).float()
    smoothed = kd_loss(logits, teacher, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())
