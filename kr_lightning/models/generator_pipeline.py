"""ClassConditionalPipeline: a trained generator as a diffusers ``DiffusionPipeline`` (save, load, sample).

Export layout (diffusers' own ``save_pretrained``; safetensors weights)::

    export/
      model_index.json     # pipeline class, its components and the registered config: num_classes, image_size,
                           #   sample_steps, sample_guidance, sampler
      unet/config.json, unet/diffusion_pytorch_model.safetensors
      scheduler/scheduler_config.json     # the training DDPMScheduler (the noise schedule)

Load it back with ``ClassConditionalPipeline.from_pretrained(folder)``, or with
:func:`kr_lightning.models.loading.load_generator`, which also reads Lightning checkpoints.
"""

from __future__ import annotations

import secrets
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from kr_lightning.errors import ConfigError
from kr_lightning.models import speedups
from kr_lightning.models.sampling import SAMPLERS, GuidanceInterval, SamplerKind, sample


class ClassConditionalPipeline(DiffusionPipeline):
    """Class-conditional sampling with classifier-free guidance from a ``UNet2DModel`` and its noise schedule.

    ``scheduler`` is the training noise schedule. Each call builds the inference scheduler of the requested kind
    from its config (``DDIMScheduler.from_config(pipe.scheduler.config)`` and so on, see
    :func:`kr_lightning.models.sampling.make_scheduler`), so one pipeline serves every sampler; the class of
    ``scheduler`` itself is not used. The denoising loop is :func:`kr_lightning.models.sampling.sample`.

    Args:
        unet: Denoiser with ``num_classes + 1`` class embeddings; index ``num_classes`` is the "no class" token.
        scheduler: The training scheduler (betas, prediction type, timestep spacing, clipping).
        num_classes: Number of classes K (``None``: the UNet's class embeddings minus the "no class" one).
        image_size: Side of the returned images; the UNet may work on a padded size (``None``: the UNet's size).
        sample_steps: Default number of sampler steps.
        sample_guidance: Default guidance scale.
        sampler: Default sampler kind (one of ``SAMPLERS``).
        distilled_from: For a few-step generator (:mod:`kr_lightning.fewstep`): the generator it was distilled from
            and that generator's sampler knobs; ``None`` for a generator trained on images.
    """

    def __init__(
        self,
        unet: UNet2DModel,
        scheduler: SchedulerMixin,
        num_classes: int | None = None,
        image_size: int | None = None,
        sample_steps: int = 20,
        sample_guidance: float = 2.0,
        sampler: str = "ddim",  # a SamplerKind; diffusers' loader cannot check Literal annotations
        distilled_from: dict | None = None,
    ) -> None:
        super().__init__()
        embeddings = unet.config.num_class_embeds
        if embeddings is None:
            raise ConfigError("the UNet has no class embedding (num_class_embeds); it is not class-conditional")
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {SAMPLERS}; got {sampler!r}")
        if num_classes is None:
            num_classes = embeddings - 1
        if num_classes + 1 != embeddings:
            raise ConfigError(
                f"num_classes={num_classes} needs {num_classes + 1} class embeddings; the UNet has {embeddings}"
            )
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(
            num_classes=int(num_classes),
            image_size=int(unet.config.sample_size if image_size is None else image_size),
            sample_steps=int(sample_steps),
            sample_guidance=float(sample_guidance),
            sampler=sampler,
            distilled_from=distilled_from,
        )
        self.autocast: torch.dtype | None = None  # set by optimize(bf16=True)

    # -- what the rest of kr_lightning reads -----------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return self.config.num_classes

    @property
    def in_channels(self) -> int:
        """Image channels."""
        return self.unet.config.in_channels

    @property
    def image_size(self) -> int:
        """Side of the returned images."""
        return self.config.image_size

    @property
    def sample_steps(self) -> int:
        """Default number of sampler steps."""
        return self.config.sample_steps

    @property
    def sample_guidance(self) -> float:
        """Default guidance scale."""
        return self.config.sample_guidance

    @property
    def sampler(self) -> SamplerKind:
        """Default sampler kind."""
        return self.config.sampler

    @property
    def distilled_from(self) -> dict | None:
        """The generator and knobs a few-step generator was distilled from (``None``: trained on images)."""
        return self.config.get("distilled_from")

    @property
    def source(self) -> str:
        """Where it was loaded from (a checkpoint or an export folder; ``""`` for a live model)."""
        return str(self.name_or_path or "")

    # -- sampling ----------------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        class_labels: torch.Tensor | Sequence[int],
        *,
        generator: torch.Generator,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        sampler: SamplerKind | None = None,
        guidance_interval: GuidanceInterval | None = None,
        output_type: Literal["pt", "np"] = "pt",
        return_dict: bool = True,
        batch_size: int = 256,
        progress: bool = False,
    ) -> ImagePipelineOutput | tuple[torch.Tensor | np.ndarray]:
        """Draw one image per entry of ``class_labels``.

        Args:
            class_labels: ``(N,)`` class indices in ``[0, num_classes)``.
            generator: The random generator (``torch.Generator``) all noise comes from; its device is where the
                noise is drawn. Required: the global RNG is never used.
            num_inference_steps: Sampler steps (``None``: ``sample_steps``).
            guidance_scale: Classifier-free guidance scale ``w`` (``None``: ``sample_guidance``; 1 = no guidance).
            sampler: ``ddpm``, ``ddim``, ``dpmsolver++`` or ``unipc`` (``None``: the configured ``sampler``).
            guidance_interval: Guide only the steps whose noise level ``sigma`` lies in ``(lo, hi]``
                (:func:`kr_lightning.models.sampling.sample`); ``None``: every step.
            output_type: ``pt``: ``(N, C, H, W)`` float32 tensor in ``[-1, 1]`` on the UNet's device; ``np``:
                ``(N, H, W, C)`` float32 array in ``[0, 1]`` (diffusers' numpy convention).
            return_dict: Return an ``ImagePipelineOutput`` (else a one-element tuple).
            batch_size: Images denoised together.
            progress: Show a progress bar over batches.

        Returns:
            ``ImagePipelineOutput(images=...)`` or ``(images,)``.
        """
        labels = torch.as_tensor(class_labels, dtype=torch.long).reshape(-1)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes}); got [{labels.min()}, {labels.max()}]")
        if output_type not in ("pt", "np"):
            raise ConfigError(f"output_type must be 'pt' or 'np'; got {output_type!r}")
        was_training = self.unet.training
        self.unet.eval()
        try:
            images = sample(
                self.unet,
                self.scheduler.config,
                labels,
                steps=self.sample_steps if num_inference_steps is None else num_inference_steps,
                guidance=self.sample_guidance if guidance_scale is None else guidance_scale,
                sampler=self.sampler if sampler is None else sampler,
                guidance_interval=guidance_interval,
                null_label=self.num_classes,
                rng=generator,
                batch_size=batch_size,
                image_size=self.image_size,
                autocast=self.autocast,
                progress=progress,
            )
        finally:
            self.unet.train(was_training)
        if output_type == "np":
            images = (images / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy()
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    # -- speed -------------------------------------------------------------------------------------------------------
    def optimize(
        self, *, channels_last: bool = False, compile: bool = False, bf16: bool = False
    ) -> ClassConditionalPipeline:
        """Speed up sampling in place: channels-last convolutions, ``torch.compile`` of the UNet, bf16 autocast.

        Channels-last and compile keep the images to float rounding (~2e-3 per pixel, see
        ``benchmarks/sampling.py``). bf16 autocast changes them by ~1e-2 per pixel on average (measurably, not
        bitwise, equivalent: ``benchmarks/README.md`` gives the CAS it keeps); it is applied only where the device
        has native bf16 units, else it warns and stays float32. Compilation costs tens of seconds once, so it pays
        off for repeated generation (GKD regeneration), not for a single grid. Where inductor has no backend (no
        C++ compiler on a CPU machine, no Triton on a GPU one) it warns and stays eager.
        """
        if channels_last:
            self.unet.to(memory_format=torch.channels_last)
        if bf16:
            unsupported = speedups.bf16_unsupported(self.device)
            if unsupported:
                warnings.warn(f"bf16 sampling skipped: {unsupported}; sampling stays float32.", stacklevel=2)
            else:
                self.autocast = torch.bfloat16
        if compile and not isinstance(self.unet, torch._dynamo.eval_frame.OptimizedModule):
            missing = speedups.compile_backend_missing(self.device)
            if missing:
                warnings.warn(f"torch.compile skipped: {missing}; sampling runs eagerly (same images).", stacklevel=2)
            else:
                self.unet = torch.compile(self.unet, dynamic=False)
        return self

    # -- saving ------------------------------------------------------------------------------------------------------
    def export(self, folder: str | Path) -> Path:
        """``save_pretrained`` to ``folder`` atomically: a complete new folder or the previous one, never a mix."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.parent / f".{folder.name}.{secrets.token_hex(6)}"
        tmp.mkdir()  # the umask's mode, not mkdtemp's owner-only 0o700: the export is read by other stages and users
        try:
            self.save_pretrained(tmp, safe_serialization=True)
            old = folder.with_name(f".{folder.name}.old")
            if folder.exists():
                folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder
