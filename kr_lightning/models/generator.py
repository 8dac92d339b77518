"""DiffusionGenerator: class-conditional DDPM training of a diffusers UNet with label dropout for CFG."""

from __future__ import annotations

from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from kr_lightning.errors import ConfigError, DivergedError
from kr_lightning.models.fit_checks import check_checkpoint_fits
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.loss_weighting import min_snr_weights
from kr_lightning.models.lr_schedule import adamw_warmup_cosine
from kr_lightning.models.sampling import SamplerKind
from kr_lightning.models.unet import build_unet
from kr_lightning.seeding import DIFFUSION_NOISE, DIFFUSION_VAL_NOISE, make_rng


class DiffusionGenerator(L.LightningModule):
    """Trains ``UNet2DModel`` with the DDPM objective (Ho et al. 2020, Algorithm 1) on real ``(x, y)`` batches.

    Labels are replaced by the "no class" token (index ``num_classes``) with probability ``label_dropout`` so that
    one network gives both the conditional and the unconditional prediction for classifier-free guidance (Ho &
    Salimans 2022). Images are padded (edge values) to the UNet's size and cropped back when sampling. All noise,
    timesteps and label drops come from an rng keyed by ``(seed, global_step, rank)``: a resumed run draws exactly
    what the uninterrupted run would have drawn.

    EMA: add Lightning's ``EMAWeightAveraging`` callback in the YAML; the checkpoints' ``state_dict`` and the
    export then hold the EMA weights, which is what every sampler loads.

    Args:
        num_classes: Number of classes K (linked from the data module).
        in_channels: Image channels (linked from the data module).
        image_size: Image side (linked from the data module).
        block_out_channels: UNet channels per resolution level.
        layers_per_block: ResNet layers per level.
        attention_levels: Self-attention at each level (one flag per level, full resolution first).
        norm_num_groups: GroupNorm groups (must divide every channel count).
        attention_head_dim: Channels per attention head.
        dropout: Dropout inside the ResNet blocks.
        resnet_time_scale_shift: How the time + class embedding enters each ResNet block: ``default`` adds a
            per-channel bias, ``scale_shift`` a scale and a shift after the GroupNorm (AdaGN, Dhariwal & Nichol 2021).
        num_train_timesteps: Diffusion steps T of the training schedule.
        beta_schedule: Noise schedule of ``DDPMScheduler``.
        prediction_type: What the UNet predicts: the noise (``epsilon``), ``v_prediction`` or the clean ``sample``.
        snr_gamma: Min-SNR-gamma loss weighting (:mod:`kr_lightning.models.loss_weighting`); ``None``: plain MSE.
        timestep_spacing: How inference schedulers space their steps (``trailing`` suits few-step sampling).
        label_dropout: Probability of training a sample with the "no class" token.
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps, followed by cosine decay to zero over the remaining steps.
        sample_steps: Default sampler steps for grids and ``sample``.
        sample_guidance: Default guidance scale.
        sampler: Default sampler kind.
        seed: Seed of the training noise; ``None`` takes the run's ``seed_everything``.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        image_size: int = 28,
        block_out_channels: list[int] = [32, 64, 64],  # noqa: B006 - jsonargparse needs a literal default
        layers_per_block: int = 1,
        attention_levels: list[bool] = [False, False, True],  # noqa: B006
        norm_num_groups: int = 8,
        attention_head_dim: int = 8,
        dropout: float = 0.0,
        resnet_time_scale_shift: Literal["default", "scale_shift"] = "default",
        num_train_timesteps: int = 1000,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"] = "squaredcos_cap_v2",
        prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon",
        timestep_spacing: Literal["leading", "trailing", "linspace"] = "trailing",
        snr_gamma: float | None = None,
        label_dropout: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_steps: int = 100,
        sample_steps: int = 20,
        sample_guidance: float = 2.0,
        sampler: SamplerKind = "ddim",
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if snr_gamma is not None and snr_gamma <= 0:
            raise ConfigError(
                f"snr_gamma must be > 0 (5 in Hang et al. 2023) or null for the plain MSE; got {snr_gamma}"
            )
        if not 0.0 <= label_dropout < 1.0:
            raise ConfigError(f"label_dropout must be in [0, 1); got {label_dropout}")
        self.save_hyperparameters()
        self.unet = build_unet(
            num_classes=num_classes,
            in_channels=in_channels,
            image_size=image_size,
            block_out_channels=list(block_out_channels),
            layers_per_block=layers_per_block,
            attention_levels=list(attention_levels),
            norm_num_groups=norm_num_groups,
            attention_head_dim=attention_head_dim,
            dropout=dropout,
            resnet_time_scale_shift=resnet_time_scale_shift,
        )
        self.noise_scheduler = DDPMScheduler(
            num_train_timesteps=num_train_timesteps,
            beta_schedule=beta_schedule,
            prediction_type=prediction_type,
            timestep_spacing=timestep_spacing,
            clip_sample=True,
        )
        self.seed = 0 if seed is None else seed

    @property
    def null_label(self) -> int:
        """Class index of the "no class" token."""
        return self.hparams.num_classes

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad ``(B, C, H, W)`` images symmetrically (edge values) to the UNet's sample size."""
        extra = self.unet.config.sample_size - x.shape[-1]
        if extra == 0:
            return x
        return F.pad(x, (extra // 2, extra - extra // 2, extra // 2, extra - extra // 2), mode="replicate")

    def diffusion_loss(self, x0: torch.Tensor, y: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """MSE of the UNet's prediction at random timesteps, with CFG label dropout.

        Args:
            x0: ``(B, C, H, W)`` clean images in ``[-1, 1]``.
            y: ``(B,)`` class indices.
            rng: Source of the noise, timesteps and label drops.
        """
        x0 = self.pad(x0)
        b = x0.shape[0]
        noise = torch.randn(x0.shape, generator=rng, device=rng.device).to(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (b,), generator=rng, device=rng.device)
        drop = torch.rand(b, generator=rng, device=rng.device) < self.hparams.label_dropout
        t, drop = t.to(x0.device), drop.to(x0.device)
        labels = torch.where(drop, torch.full_like(y, self.null_label), y)
        xt = self.noise_scheduler.add_noise(x0, noise, t)
        kind = self.hparams.prediction_type
        target = {"epsilon": noise, "sample": x0}.get(kind)
        if target is None:
            target = self.noise_scheduler.get_velocity(x0, noise, t)
        error = (self.unet(xt, t, class_labels=labels).sample.float() - target.float()).pow(2).mean(dim=(1, 2, 3))
        gamma = self.hparams.snr_gamma
        if gamma is None:
            return error.mean()
        return (error * min_snr_weights(self.noise_scheduler, t, gamma, kind).to(error)).mean()

    def training_rng(self, step: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The noise / timestep / label-drop rng of training step ``step`` on ``rank`` (stream ``DIFFUSION_NOISE``)."""
        return make_rng(self.seed, step, rank, stream=DIFFUSION_NOISE, device=device)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Denoising loss, logged as ``train/loss``."""
        x, y = batch
        rng = self.training_rng(self.global_step, self.global_rank, device=x.device)
        loss = self.diffusion_loss(x, y, rng)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"diffusion loss became {loss.item()} at step {self.global_step}; lower model.lr. "
                "The last good checkpoint is kept in the run folder."
            )
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Denoising loss on real validation images with fixed noise (comparable across epochs)."""
        x, y = batch
        rng = make_rng(self.seed, batch_idx, stream=DIFFUSION_VAL_NOISE, device=x.device)
        self.log("val/loss", self.diffusion_loss(x, y, rng), batch_size=len(y), sync_dist=True)

    def frozen(self) -> ClassConditionalPipeline:
        """The current weights (the EMA weights during validation and after fit) as a diffusers pipeline."""
        hp = self.hparams
        return ClassConditionalPipeline(
            unet=self.unet,
            scheduler=self.noise_scheduler,
            num_classes=hp.num_classes,
            image_size=hp.image_size,
            sample_steps=hp.sample_steps,
            sample_guidance=hp.sample_guidance,
            sampler=hp.sampler,
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another stage or of other data, with a message saying which."""
        check_checkpoint_fits(self, checkpoint)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW, linear warm-up then cosine decay to zero, stepped every batch."""
        hp = self.hparams
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return adamw_warmup_cosine(
            self.unet.parameters(),
            lr=hp.lr,
            weight_decay=hp.weight_decay,
            warmup_steps=hp.warmup_steps,
            total_steps=total,
        )
