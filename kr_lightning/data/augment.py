"""Batch augmentations as pure functions of ``(images, rng)``; images are ``(B, C, H, W)`` in ``[-1, 1]``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kr_lightning.errors import ConfigError


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


def mixup(x: torch.Tensor, rng: torch.Generator, concentration: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each image with a random partner from the batch: ``lam x_i + (1 - lam) x_perm(i)``.

    ``lam ~ Beta(concentration, concentration)``, drawn per image (``concentration <= 0``: the identity). Used
    with a teacher that labels the mixed images ("function matching", Beyer et al. 2022, arXiv:2106.05237): the
    student sees inputs between the synthetic images, where a fixed set says nothing about the teacher.

    Returns:
        The mixed images and, per image, the batch index of the image with the larger share (its own index when
        ``lam >= 1/2``, else its partner's), so that per-image labels can follow the dominant image.
    """
    own = torch.arange(x.shape[0], device=x.device)
    if concentration <= 0:
        return x, own
    partner = torch.randperm(x.shape[0], generator=rng, device=rng.device).to(x.device)
    beta_seed = int(torch.randint(0, 2**62, (1,), generator=rng, device=rng.device))  # torch's Beta takes no rng
    lam = np.random.default_rng(beta_seed).beta(concentration, concentration, size=x.shape[0])
    lam = torch.from_numpy(lam).to(device=x.device, dtype=x.dtype)
    share = lam[:, None, None, None]
    return share * x + (1 - share) * x[partner], torch.where(lam >= 0.5, own, partner)


def add_noise(x: torch.Tensor, rng: torch.Generator, std: float) -> torch.Tensor:
    """Add i.i.d. Gaussian pixel noise of standard deviation ``std`` and clip to ``[-1, 1]`` (``std <= 0``: identity).

    For synthetic images whose sampler leaves them smoother than the real ones (experiments/README.md, "Synthetic
    images are too smooth"): the noise restores high-frequency energy the classifiers rely on.
    """
    if std <= 0:
        return x
    noise = torch.randn(x.shape, generator=rng, device=rng.device, dtype=x.dtype).to(x.device)
    return (x + std * noise).clamp(-1.0, 1.0)


def check_view(mixup: float, noise: float, *, teacher_labels_view: bool) -> None:
    """Refuse a negative ``mixup`` or ``noise``, and mixing without a teacher that labels the mixed images."""
    if mixup < 0 or (mixup > 0 and not teacher_labels_view):
        raise ConfigError(
            f"mixup must be >= 0 and, when > 0, needs the teacher to label the mixed images (teacher_ckpt set, "
            f"label_on_view: true; hard-label students keep mixup: 0); got mixup={mixup}"
        )
    if noise < 0:
        raise ConfigError(f"noise is a standard deviation in [-1, 1] pixel units, >= 0 (0: off); got {noise}")
