"""FewStepGenerator: a copy of a trained generator's UNet taught to take the teacher sampler's path in fewer steps."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler

from kr_lightning.distill.plan import selection_winner
from kr_lightning.errors import DivergedError
from kr_lightning.fewstep.targets import ddim_step_coefficients, step_target, student_scheduler
from kr_lightning.fewstep.trajectories import TrajectoryDataModule, teacher_path
from kr_lightning.models.fit_checks import check_checkpoint_fits
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.loading import load_generator
from kr_lightning.models.lr_schedule import adamw_warmup_cosine


class FewStepGenerator(L.LightningModule):
    """Distils a guided multi-step sampler into an unguided DDIM sampler of ``student_steps`` steps.

    The student starts as a copy of the teacher's UNet (EMA weights of the export or checkpoint). Each training
    pair ``(x_a, k, y, x_b)`` of :class:`kr_lightning.fewstep.TrajectoryDataModule` asks for the output that makes
    one DDIM step from the teacher's state ``x_a`` land on the teacher's state ``x_b``
    (:func:`kr_lightning.fewstep.targets.step_target`); the loss is the mean squared error in the UNet's output
    space (for a v-prediction teacher, x0 errors weighted by ``1 + SNR``). Validation runs the student free from
    each val path's noise to its image: ``val/image_mse`` (mean squared pixel error against the teacher's image, in
    ``[-1, 1]`` units) is what checkpoints are chosen on, ``val/step_loss`` the training loss on val paths.

    The export (``frozen``) is a :class:`ClassConditionalPipeline` that samples with DDIM at ``student_steps`` steps
    and guidance 1 (one UNet row per step), whose scheduler config turns clipping off (the steps were learnt
    without it) and whose ``distilled_from`` names the teacher generator and sampler. It loads and samples like
    any generator (``sample``, ``quality``, the GKD data module).

    Args:
        teacher: Generator to distil (``DiffusionGenerator`` checkpoint or export folder); only read at start.
        selection: ``selection.json`` whose winner is the generator to distil when ``teacher`` is ``None``.
        student_steps: DDIM steps of the student (the data module's paths must have the same).
        num_classes: Number of classes K (linked from the data module).
        in_channels: Image channels (linked from the data module).
        image_size: Image side (linked from the data module).
        lr: Peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: Linear warm-up steps, then cosine decay to zero.
    """

    def __init__(
        self,
        teacher: str | None = None,
        selection: str | None = None,
        student_steps: int = 5,
        num_classes: int = 2,
        in_channels: int = 1,
        image_size: int = 28,
        lr: float = 3e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 50,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        pipe = load_generator(teacher_path(teacher, selection_winner(selection)))
        self.unet = copy.deepcopy(pipe.unet).train().requires_grad_(True)
        self.noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config, clip_sample=False, thresholding=False)
        scheduler = student_scheduler(self.noise_scheduler.config, student_steps)
        a, b = ddim_step_coefficients(scheduler)
        self.register_buffer("timesteps", scheduler.timesteps.clone(), persistent=False)
        self.register_buffer("coef_a", a.float(), persistent=False)
        self.register_buffer("coef_b", b.float(), persistent=False)
        self.distilled_from: dict[str, Any] = {"generator": pipe.source}

    def setup(self, stage: str) -> None:
        """Record which paths the student learns (the data module's teacher, knobs, path count and seed)."""
        data = self.trainer.datamodule if self.trainer is not None else None
        if isinstance(data, TrajectoryDataModule) and data.provenance:
            self.distilled_from = dict(data.provenance)

    def predict_step_output(self, x: torch.Tensor, k: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The student's output at student step ``k`` (per row) for states ``x`` of classes ``y``."""
        return self.unet(x, self.timesteps[k], class_labels=y).sample.float()

    def step_loss(self, x_a: torch.Tensor, k: torch.Tensor, y: torch.Tensor, x_b: torch.Tensor) -> torch.Tensor:
        """Mean squared error between the student's output and the one that reaches the teacher's next state."""
        target = step_target(x_a, x_b, self.coef_a[k], self.coef_b[k])
        return F.mse_loss(self.predict_step_output(x_a, k, y), target)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Step loss, logged as ``train/loss``."""
        x_a, k, y, x_b = batch
        loss = self.step_loss(x_a, k, y, x_b)
        if not torch.isfinite(loss):
            raise DivergedError(
                f"few-step distillation loss became {loss.item()} at step {self.global_step}; lower model.lr. "
                "The last good checkpoint is kept in the run folder."
            )
        self.log("train/loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def rollout(self, noise: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The student's DDIM path from ``noise`` to its (clamped) image, ``x <- a_k x + b_k out_k``."""
        x = noise
        for k in range(len(self.timesteps)):
            ks = torch.full_like(y, k)
            x = self.coef_a[k] * x + self.coef_b[k] * self.predict_step_output(x, ks, y)
        return x.clamp(-1.0, 1.0)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Teacher-forced step loss and the free-running image error on whole val paths."""
        states, y = batch
        steps = states.shape[1] - 1
        ks = torch.arange(steps, device=y.device)
        step_losses = [self.step_loss(states[:, k], ks[k].expand_as(y), y, states[:, k + 1]) for k in range(steps)]
        image_mse = F.mse_loss(self.rollout(states[:, 0], y), states[:, -1])
        self.log("val/step_loss", torch.stack(step_losses).mean(), batch_size=len(y), sync_dist=True)
        self.log("val/image_mse", image_mse, prog_bar=True, batch_size=len(y), sync_dist=True)

    def frozen(self) -> ClassConditionalPipeline:
        """The current weights as a pipeline sampling DDIM at ``student_steps`` steps without guidance."""
        hp = self.hparams
        return ClassConditionalPipeline(
            unet=self.unet,
            scheduler=self.noise_scheduler,
            num_classes=hp.num_classes,
            image_size=hp.image_size,
            sample_steps=hp.student_steps,
            sample_guidance=1.0,
            sampler="ddim",
            distilled_from=self.distilled_from,
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the provenance with the weights."""
        checkpoint["distilled_from"] = self.distilled_from

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse checkpoints of another stage or of other data, with a message saying which."""
        check_checkpoint_fits(self, checkpoint)
        self.distilled_from = checkpoint.get("distilled_from", self.distilled_from)

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
