"""Classification and distillation losses as pure functions of tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_cross_entropy(
    logits: torch.Tensor, target_probs: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean over the batch of ``-sum_k p_k log softmax(logits)_k`` (weighted by ``weights`` when given).

    Args:
        logits: ``(B, K)`` student logits.
        target_probs: ``(B, K)`` target distributions (rows sum to 1).
        weights: ``(B,)`` non-negative per-image weights (see :func:`weighted_mean`).
    """
    return weighted_mean(-(target_probs * F.log_softmax(logits, dim=-1)).sum(-1), weights)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i w_i v_i / sum_i w_i`` (the plain mean without weights); 0, differentiable, when every ``w_i = 0``."""
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)


def smooth(probs: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Mix target distributions with the uniform one: ``(1 - eps) p + eps / K``."""
    return probs * (1.0 - label_smoothing) + label_smoothing / probs.shape[-1]


def kd_loss(
    logits: torch.Tensor,
    teacher_probs: torch.Tensor,
    hard_labels: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    alpha: float = 0.0,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Generative-knowledge-distillation loss (Hinton et al. 2015, Eq. 2 with the T^2 factor).

    ``(1 - alpha) * T^2 * CE(softmax(logits / T), p_teacher) + alpha * CE(logits, y_hard)``, where
    ``teacher_probs`` were computed at the same temperature ``T``. The soft term equals the KL divergence up to
    the (constant) teacher entropy. Label smoothing is applied to both targets.

    Args:
        logits: ``(B, K)`` student logits.
        teacher_probs: ``(B, K)`` teacher softmax at temperature ``T`` (rows sum to 1).
        hard_labels: ``(B,)`` class indices (the generator's class); needed when ``alpha > 0``.
        temperature: Distillation temperature ``T > 0``.
        alpha: Weight of the hard-label term in ``[0, 1]``.
        label_smoothing: Smoothing ``eps`` in ``[0, 1)``.
        weights: ``(B,)`` per-image weights of both terms (:mod:`kr_lightning.models.sample_weights`); ``None``:
            the plain batch mean.
    """
    soft = soft_cross_entropy(logits / temperature, smooth(teacher_probs, label_smoothing), weights) * temperature**2
    if alpha == 0.0:
        return soft
    if hard_labels is None:
        raise ValueError("kd_loss with alpha > 0 needs hard_labels")
    hard = weighted_mean(
        F.cross_entropy(logits, hard_labels, label_smoothing=label_smoothing, reduction="none"), weights
    )
    return (1.0 - alpha) * soft + alpha * hard
