"""Per-image weights of a synthetic batch from its teacher logits: confidence weighting, filtering, class balance.

A synthetic image that the teacher finds ambiguous, or that it assigns to another class than the generator was
asked for, carries less reliable knowledge than a clear one. These pure functions turn the teacher's logits (at
temperature 1) into weights of the distillation loss; the student normalises by their sum, so a weighting changes
which images dominate a batch, not the loss scale.

========================  ========================================================================================
``weighting``             weight of image i before filtering and balance
========================  ========================================================================================
``none``                  1
``confidence``            the teacher's top probability ``max_k p_k`` (its certainty, whatever the class)
``agreement``             the teacher's probability of the generator's class ``p_y`` (does it look like ``y``?)
========================  ========================================================================================

``min_confidence`` then drops images whose top probability is below it, and ``balance: teacher`` rescales the
weights so that every class the teacher predicts in the batch holds the same share of the total weight (class
balance by teacher label; the generator's classes are balanced by construction, the teacher's labels are not).
"""

from __future__ import annotations

from typing import Literal

import torch

Weighting = Literal["none", "confidence", "agreement"]
Balance = Literal["none", "teacher"]


def weights_anything(weighting: Weighting, min_confidence: float, balance: Balance) -> bool:
    """Whether these settings can give an image a weight other than 1 (the defaults never do)."""
    return (weighting, min_confidence, balance) != ("none", 0.0, "none")


def sample_weights(
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    weighting: Weighting = "none",
    min_confidence: float = 0.0,
    balance: Balance = "none",
) -> torch.Tensor:
    """Non-negative weights ``(B,)`` of a batch; all ones with the defaults.

    Args:
        teacher_logits: ``(B, K)`` teacher logits at temperature 1.
        labels: ``(B,)`` the generator's classes.
        weighting: ``none``, ``confidence`` or ``agreement`` (see the module table).
        min_confidence: Images whose teacher top probability is below this get weight 0 (``0`` keeps every image).
        balance: ``teacher``: equal total weight for every class the teacher predicts in the batch.
    """
    probs = teacher_logits.detach().float().softmax(-1)
    top = probs.max(-1).values
    if weighting == "none":
        weights = torch.ones_like(top)
    elif weighting == "confidence":
        weights = top
    elif weighting == "agreement":
        weights = probs.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
    else:
        raise ValueError(f"unknown weighting {weighting!r}; use none, confidence or agreement")
    weights = weights * (top >= min_confidence)
    if balance == "teacher":
        predicted = probs.argmax(-1)
        totals = torch.zeros(probs.shape[-1], dtype=weights.dtype, device=weights.device)
        totals = totals.index_add(0, predicted, weights)
        present = (totals > 0).sum().clamp_min(1)
        weights = torch.where(totals[predicted] > 0, weights / totals[predicted].clamp_min(1e-12), 0.0) / present
    elif balance != "none":
        raise ValueError(f"unknown balance {balance!r}; use none or teacher")
    return weights
