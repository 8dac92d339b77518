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
    expected = F.cross_entropy(logits / t, (teacher_logits / t).softmax(-1)) * t * t  # torch's soft-target CE
    assert kd_loss(logits, (teacher_logits / t).softmax(-1), temperature=t).item() == pytest.approx(expected.item())


def test_kd_alpha_mixes_hard_labels():
    logits, teacher = torch.randn(8, 3), torch.randn(8, 3).softmax(-1)
    y = torch.randint(0, 3, (8,))
    mixed = kd_loss(logits, teacher, y, alpha=0.25)
    expected = 0.75 * F.cross_entropy(logits, teacher) + 0.25 * F.cross_entropy(logits, y)
    assert mixed.item() == pytest.approx(expected.item())
    assert kd_loss(logits, teacher, y, alpha=1.0).item() == pytest.approx(F.cross_entropy(logits, y).item())
    with pytest.raises(ValueError, match="hard_labels"):
        kd_loss(logits, teacher, alpha=0.5)


def test_label_smoothing_moves_targets_towards_uniform():
    # non-trivial logits: on all-zero logits every target distribution gives log K, so nothing could fail
    torch.manual_seed(0)
    logits, y, eps = 3 * torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 1, 0]), 0.1
    one_hot = F.one_hot(y, 4).float()
    smoothed = kd_loss(logits, one_hot, label_smoothing=eps)
    log_p = F.log_softmax(logits, -1)
    by_hand = ((1 - eps) * -log_p[torch.arange(6), y] + eps * -log_p.mean(-1)).mean()  # target (1-eps) y + eps/K
    assert smoothed.item() == pytest.approx(by_hand.item())
    assert smoothed.item() == pytest.approx(F.cross_entropy(logits, y, label_smoothing=eps).item())
    assert smoothed.item() != pytest.approx(kd_loss(logits, one_hot).item(), rel=1e-3)
    # the hard-label term is smoothed too
    hard = kd_loss(logits, one_hot, y, alpha=1.0, label_smoothing=eps)
    assert hard.item() == pytest.approx(by_hand.item())
