"""The learning-rate schedule the generator and the classifiers share: linear warm-up, then cosine decay or constant."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, SequentialLR


def warmup_schedule(
    optimizer: torch.optim.Optimizer,
    *,
    warmup_steps: int,
    total_steps: int,
    after: Literal["cosine", "constant"] = "cosine",
) -> LRScheduler:
    """Torch's ``LinearLR`` warm-up followed by ``CosineAnnealingLR`` to zero (or a constant rate), per step.

    The factor on the peak rate at step ``s`` (0-based) with ``w = warmup_steps`` and ``T = total_steps`` is
    ``(s + 1) / w`` while ``s < w``, then ``(1 + cos(pi (s - w) / (T - w))) / 2`` (or ``1``). With ``w >= T`` the
    run ends inside the warm-up; with ``w = 0`` it starts at the peak rate.
    """
    if warmup_steps == 0 and after == "cosine":
        return CosineAnnealingLR(optimizer, T_max=max(1, total_steps), eta_min=0.0)
    warmup = LinearLR(optimizer, start_factor=1.0 / max(1, warmup_steps), total_iters=max(0, warmup_steps - 1))
    if after == "constant":
        return warmup
    decay = CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup_steps), eta_min=0.0)
    return SequentialLR(optimizer, [warmup, decay], milestones=[warmup_steps])


def per_step(optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> dict[str, Any]:
    """What ``configure_optimizers`` returns for a scheduler stepped after every optimizer step."""
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def adamw_warmup_cosine(
    params: Any,  # noqa: ANN401 - an iterable of parameters or parameter groups
    *,
    lr: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
) -> dict[str, Any]:
    """AdamW with linear warm-up then cosine decay to zero, stepped every batch (``configure_optimizers``)."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return per_step(optimizer, warmup_schedule(optimizer, warmup_steps=warmup_steps, total_steps=total_steps))
