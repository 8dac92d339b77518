"""Batch augmentations as pure functions of ``(images, rng)``; images are ``(B, C, H, W)`` in ``[-1, 1]``."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, max_shift: int, rng: torch.Generator) -> torch.Tensor:
    """Translate each image by an integer offset in ``[-max_shift, max_shift]`` per axis (edge padding)."""
    if max_shift <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * max_shift + 1, (2, b), generator=rng, device=rng.device).to(x.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def random_flip(x: torch.Tensor, dim: int, rng: torch.Generator) -> torch.Tensor:
    """Flip each image along ``dim`` (-1 horizontal, -2 vertical) with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=rng, device=rng.device) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(dim), x)


def augment(x: torch.Tensor, rng: torch.Generator, *, max_shift: int, hflip: bool, vflip: bool) -> torch.Tensor:
    """Shift, then optionally flip; the identity when ``max_shift == 0`` and both flips are off."""
    x = random_shift(x, max_shift, rng)
    if hflip:
        x = random_flip(x, -1, rng)
    if vflip:
        x = random_flip(x, -2, rng)
    return x
