"""Classifier-free-guidance sampling over a diffusers ``UNet2DModel``: one pure function used everywhere.

The generator's sample grids, ``python -m kr_lightning sample``, the selection stage and the GKD data module all
call :func:`sample`. Conditional and unconditional predictions come from **one** batched UNet forward per step
(the batch is ``[x, x]`` with labels ``[y, null]``); with ``guidance == 1`` only the conditional half is run.

Guidance can be limited to an interval of noise levels (Kynkäänniemi et al., NeurIPS 2024, arXiv 2404.07724):
steps whose noise level ``sigma = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` lies outside ``(lo, hi]`` run the
conditional model alone, at half the UNet cost of a guided step.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from tqdm.auto import tqdm

from kr_lightning.errors import ConfigError

SamplerKind = Literal["ddpm", "ddim", "dpmsolver++", "unipc"]
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpmsolver++", "unipc")
GuidanceInterval = tuple[float, float]


def make_scheduler(config: Mapping[str, Any], sampler: SamplerKind) -> SchedulerMixin:
    """A fresh inference scheduler of kind ``sampler`` built from the training scheduler's config."""
    if sampler == "ddpm":
        return DDPMScheduler.from_config(config)
    if sampler == "ddim":
        return DDIMScheduler.from_config(config)
    # DPM-Solver and UniPC have no clip_sample; their equivalent is thresholding the x0 prediction (below).
    clip = bool(config.get("clip_sample", True))
    max_value = float(config.get("clip_sample_range", 1.0))
    if sampler == "unipc":
        return UniPCMultistepScheduler.from_config(
            config, solver_order=2, predict_x0=True, thresholding=clip, sample_max_value=max_value
        )
    if sampler == "dpmsolver++":
        # DPM-Solver has no clip_sample; its equivalent is thresholding the x0 prediction. Without it the first
        # step (t = 999, alpha_bar ~ 0 under the cosine schedule) divides by sqrt(alpha_bar) and the samples blow up.
        # With sample_max_value = clip range, "dynamic" thresholding is exactly DDIM's static clip of x0.
        return DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, thresholding=clip, sample_max_value=max_value
        )
    raise ConfigError(f"sampler must be one of {SAMPLERS}; got {sampler!r}")


def noise_levels(scheduler: SchedulerMixin) -> torch.Tensor:
    """``sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t)`` of each inference timestep (after ``set_timesteps``)."""
    alpha_bar = scheduler.alphas_cumprod[scheduler.timesteps.long().cpu()].double()
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def guided_steps(sigmas: torch.Tensor, interval: GuidanceInterval | None) -> list[bool]:
    """Which steps apply guidance: those with ``lo < sigma <= hi`` (every step when ``interval`` is ``None``)."""
    if interval is None:
        return [True] * len(sigmas)
    lo, hi = check_interval(interval)
    return [bool(lo < s <= hi) for s in sigmas.tolist()]


def check_interval(interval: GuidanceInterval | list[float]) -> GuidanceInterval:
    """``interval`` as a ``(lo, hi)`` tuple, or one clear error when it is not ``0 <= lo < hi``."""
    values = tuple(float(v) for v in interval)
    if len(values) != 2 or not 0.0 <= values[0] < values[1]:
        raise ConfigError(
            f"guidance_interval must be [lo, hi] noise levels sigma with 0 <= lo < hi (guidance where "
            f"lo < sigma <= hi); got {list(interval)}"
        )
    return values[0], values[1]


def knobs_name(sampler: str, steps: int, guidance: float, guidance_interval: GuidanceInterval | None = None) -> str:
    """A short file-name tag of a sampling setting, e.g. ``dpmsolver++-s10-g2`` or ``unipc-s5-g2-i0.3-3``."""
    tag = f"{sampler}-s{steps}-g{guidance:g}"
    return tag if guidance_interval is None else f"{tag}-i{guidance_interval[0]:g}-{guidance_interval[1]:g}"


def unet_rows(steps: int, guided: int) -> int:
    """UNet rows per image of a sampling run: one per step, two per guided step (the cost unit of sampling)."""
    return steps + guided


def guided_prediction(
    unet: UNet2DModel, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, guidance: float, null_label: int
) -> torch.Tensor:
    """``u + w (c - u)`` from one batched forward (``w = guidance``; 1 is plain conditional, 0 unconditional).

    The result is float32 whatever the UNet computes in (the guidance arithmetic is never done in bfloat16).
    """
    if guidance == 1.0:
        return unet(x, t, class_labels=labels).sample.float()
    null = torch.full_like(labels, null_label)
    both = unet(torch.cat([x, x]), t, class_labels=torch.cat([labels, null])).sample.float()
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def _is_channels_last(unet: UNet2DModel) -> bool:
    """Whether the UNet's convolutions were converted to channels-last (inputs then follow)."""
    weight = unet.conv_in.weight
    return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Crop the central ``size x size`` window of ``(B, C, H, W)`` (the inverse of symmetric padding)."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top : top + size, left : left + size]


@torch.no_grad()
def sample(
    unet: UNet2DModel,
    scheduler_config: Mapping[str, Any],
    labels: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    null_label: int,
    rng: torch.Generator,
    sampler: SamplerKind = "ddim",
    guidance_interval: GuidanceInterval | None = None,
    batch_size: int = 256,
    image_size: int | None = None,
    autocast: torch.dtype | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Draw class-conditional images with classifier-free guidance.

    All initial noise is drawn first, from ``rng``, for the whole request, so the images do not depend on how
    they are batched for deterministic samplers (DDIM with ``eta = 0``, DPM-Solver++). DDPM's per-step noise also
    comes from ``rng``. The global RNG is never used.

    Args:
        unet: Class-conditional denoiser whose last class index is the "no class" token.
        scheduler_config: Config of the training noise scheduler (betas, prediction type, spacing...).
        labels: ``(N,)`` int64 class indices.
        steps: Number of sampler steps.
        guidance: Guidance scale ``w``.
        null_label: Index of the "no class" token (``num_classes``).
        rng: Explicit random generator (its device is where the noise is drawn).
        sampler: ``ddpm``, ``ddim``, ``dpmsolver++`` or ``unipc`` (UniPC-bh2, order 2, x0-thresholded).
        guidance_interval: Apply ``guidance`` only at steps with ``lo < sigma <= hi`` (others run the conditional
            model alone); ``None`` guides every step.
        batch_size: Images denoised together (each costs two UNet rows when ``guidance != 1``).
        image_size: Crop the UNet's (padded) output to this size; ``None`` keeps the UNet's size.
        autocast: Run the UNet forwards under ``torch.autocast`` in this dtype (e.g. ``torch.bfloat16``); the
            scheduler arithmetic and the returned images stay float32. ``None``: the UNet's own dtype.
        progress: Show a progress bar over batches.

    Returns:
        ``(N, C, image_size, image_size)`` float32 images in ``[-1, 1]`` on the UNet's device.
    """
    trajectories = _denoise(
        unet,
        scheduler_config,
        labels,
        steps=steps,
        guidance=guidance,
        null_label=null_label,
        rng=rng,
        sampler=sampler,
        guidance_interval=guidance_interval,
        batch_size=batch_size,
        autocast=autocast,
        progress=progress,
    )
    out = [states[-1].clamp(-1.0, 1.0) for states in trajectories]
    images = torch.cat(out) if out else _initial_noise(unet, labels, rng)
    return images if image_size is None else center_crop(images, image_size)


@torch.no_grad()
def sample_trajectory(
    unet: UNet2DModel,
    scheduler_config: Mapping[str, Any],
    labels: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    null_label: int,
    rng: torch.Generator,
    sampler: SamplerKind = "ddim",
    guidance_interval: GuidanceInterval | None = None,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """The whole denoising path of :func:`sample`: the state before every step, then the final image.

    Same noise, steps and guidance as :func:`sample` with the same arguments (its images are the last state,
    cropped). Used to distil a sampler into fewer steps (:mod:`kr_lightning.fewstep`).

    Returns:
        ``(N, steps + 1, C, S, S)`` float32 states at the UNet's (padded) size ``S`` on the UNet's device; the last
        one is clamped to ``[-1, 1]`` as :func:`sample` clamps its images.
    """
    trajectories = _denoise(
        unet,
        scheduler_config,
        labels,
        steps=steps,
        guidance=guidance,
        null_label=null_label,
        rng=rng,
        sampler=sampler,
        guidance_interval=guidance_interval,
        batch_size=batch_size,
        progress=progress,
    )
    out = []
    for states in trajectories:
        states[-1] = states[-1].clamp(-1.0, 1.0)
        out.append(torch.stack(states, dim=1))
    if out:
        return torch.cat(out)
    return _initial_noise(unet, labels, rng).unsqueeze(1).expand(-1, steps + 1, -1, -1, -1)


def _initial_noise(unet: UNet2DModel, labels: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """All the starting noise of a request, drawn at once from ``rng`` (float32, on the UNet's device)."""
    size = unet.config.sample_size
    shape = (len(labels), unet.config.in_channels, size, size)
    return torch.randn(shape, generator=rng, device=rng.device, dtype=torch.float32).to(unet.device)


def _denoise(
    unet: UNet2DModel,
    scheduler_config: Mapping[str, Any],
    labels: torch.Tensor,
    *,
    steps: int,
    guidance: float,
    null_label: int,
    rng: torch.Generator,
    sampler: SamplerKind,
    guidance_interval: GuidanceInterval | None,
    batch_size: int,
    autocast: torch.dtype | None = None,
    progress: bool = False,
) -> Iterator[list[torch.Tensor]]:
    """Denoise batch after batch; yields each batch's states (before every step, then the final, unclamped)."""
    if steps < 1:
        raise ConfigError(f"steps must be >= 1; got {steps}")
    device, dtype = unet.device, unet.dtype
    memory_format = torch.channels_last if _is_channels_last(unet) else torch.contiguous_format
    noise = _initial_noise(unet, labels, rng)
    labels = labels.to(device)
    for start in tqdm(range(0, len(labels), batch_size), desc="sampling", disable=not progress, leave=False):
        scheduler = make_scheduler(scheduler_config, sampler)
        scheduler.set_timesteps(steps, device=device)
        guided = guided_steps(noise_levels(scheduler), guidance_interval)
        x = noise[start : start + batch_size] * scheduler.init_noise_sigma
        y = labels[start : start + batch_size]
        extra: dict[str, Any] = {"generator": rng} if sampler in ("ddpm", "dpmsolver++") else {}
        states = []
        for t, guide in zip(scheduler.timesteps, guided, strict=True):
            states.append(x)
            x_in = scheduler.scale_model_input(x, t).to(dtype=dtype, memory_format=memory_format)
            with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
                eps = guided_prediction(unet, x_in, t, y, guidance if guide else 1.0, null_label)
            x = scheduler.step(eps, t, x, **extra).prev_sample
        yield [*states, x]
