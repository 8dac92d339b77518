"""Batch augmentations as pure functions of ``(images, rng)``; images are ``(B, C, H, W)`` in ``[-1, 1]``."""

from __future__ import annotations

import math

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


def add_noise(x: torch.Tensor, rng: torch.Generator, std: float, grain: float = 0.0) -> torch.Tensor:
    """Add Gaussian pixel noise of standard deviation ``std`` and clip to ``[-1, 1]`` (``std <= 0``: identity).

    ``grain`` is the noise's correlation length in pixels: white noise blurred by a Gaussian of that standard
    deviation (reflected at the borders), then rescaled to ``std`` per pixel; ``0`` gives i.i.d. pixels. For
    synthetic images whose sampler leaves them smoother than the real ones (experiments/README.md, "Synthetic
    images are too smooth"): the noise restores texture the classifiers rely on, and a grain puts its power at the
    spatial frequencies the sampler lost rather than spread evenly up to the pixel scale.
    """
    if std <= 0:
        return x
    noise = torch.randn(x.shape, generator=rng, device=rng.device, dtype=x.dtype).to(x.device)
    if grain > 0:
        noise = _correlate(noise, grain)
    return (x + std * noise).clamp(-1.0, 1.0)


def _correlate(noise: torch.Tensor, grain: float) -> torch.Tensor:
    """Blur unit white ``noise`` by a separable Gaussian of sd ``grain`` px, keeping unit variance per pixel.

    The kernel is cut at 3 sd (or at the image size); the variance is exact away from the reflected borders.
    """
    radius = min(max(1, math.ceil(3 * grain)), noise.shape[-2] - 1, noise.shape[-1] - 1)  # reflect needs < size
    taps = torch.arange(-radius, radius + 1, device=noise.device, dtype=noise.dtype)
    kernel = torch.exp(-0.5 * (taps / grain) ** 2)
    kernel = kernel / kernel.square().sum().sqrt()  # unit gain on white noise's variance, per axis
    c = noise.shape[1]
    padded = F.pad(noise, (radius,) * 4, mode="reflect")
    rows = F.conv2d(padded, kernel.expand(c, 1, 1, -1), groups=c)
    return F.conv2d(rows, kernel[:, None].expand(c, 1, -1, 1), groups=c)


def check_view(mixup: float, noise: float, *, teacher_labels_view: bool, grain: float = 0.0) -> None:
    """Refuse a negative ``mixup``, ``noise`` or ``grain``, and mixing without a teacher that labels the mixes."""
    if mixup < 0 or (mixup > 0 and not teacher_labels_view):
        raise ConfigError(
            f"mixup must be >= 0 and, when > 0, needs the teacher to label the mixed images (teacher_ckpt set, "
            f"label_on_view: true; hard-label students keep mixup: 0); got mixup={mixup}"
        )
    if noise < 0:
        raise ConfigError(f"noise is a standard deviation in [-1, 1] pixel units, >= 0 (0: off); got {noise}")
    if grain < 0:
        raise ConfigError(f"noise_grain is a correlation length in pixels, >= 0 (0: i.i.d. pixels); got {grain}")
