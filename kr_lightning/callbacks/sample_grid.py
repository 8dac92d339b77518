"""SampleGrid: fixed-seed class-conditional samples of the generator, one row per class, as PNG (and W&B)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, WeightAveraging
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from kr_lightning.errors import ConfigError
from kr_lightning.grids import grid_image, save_grid
from kr_lightning.models.sampling import SamplerKind
from kr_lightning.runs import run_dir
from kr_lightning.seeding import GRID, make_rng


class SampleGrid(Callback):
    """Writes ``<run folder>/samples/epoch{NNN}.png`` every few epochs and ``final.png`` at the end of fit.

    The same noise (``seed``) is used every time, so grids are comparable across epochs. With an EMA callback the
    grid shows the EMA weights: list ``SampleGrid`` after ``EMAWeightAveraging`` in ``trainer.callbacks``.

    Args:
        every_n_epochs: Write a grid when ``(epoch + 1)`` is a multiple of this (on validation epochs).
        per_class: Images per class (row length).
        steps: Sampler steps (``None``: the generator's default).
        guidance: Guidance scale (``None``: the generator's default).
        sampler: Sampler kind (``None``: the generator's default).
        seed: Seed of the fixed noise.
    """

    def __init__(
        self,
        every_n_epochs: int = 5,
        per_class: int = 8,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: SamplerKind | None = None,
        seed: int = 0,
    ) -> None:
        self.every_n_epochs = every_n_epochs
        self.per_class = per_class
        self.steps = steps
        self.guidance = guidance
        self.sampler = sampler
        self.seed = seed

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Check that the model can sample and that EMA swaps happen before this callback runs."""
        if not hasattr(pl_module, "frozen"):
            raise ConfigError(f"SampleGrid needs a DiffusionGenerator; got {type(pl_module).__name__}")
        mine = trainer.callbacks.index(self)
        late = [type(cb).__name__ for cb in trainer.callbacks[mine:] if isinstance(cb, WeightAveraging)]
        if late:
            raise ConfigError(f"list SampleGrid after {late} in trainer.callbacks so that grids show the EMA weights")

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Grid of the (EMA) weights being validated."""
        epoch = trainer.current_epoch
        if not trainer.sanity_checking and (epoch + 1) % self.every_n_epochs == 0:
            self.write(trainer, pl_module, f"epoch{epoch:03d}")

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Grid of the final (EMA) weights."""
        self.write(trainer, pl_module, "final")

    @rank_zero_only
    def write(self, trainer: L.Trainer, pl_module: L.LightningModule, tag: str) -> Path:
        """Sample, save ``samples/{tag}.png`` and send it to W&B when that logger is on."""
        pipe = pl_module.frozen()
        labels = torch.arange(pipe.num_classes).repeat_interleave(self.per_class)
        rng = make_rng(self.seed, stream=GRID, device=pipe.device)
        images = pipe(
            labels, generator=rng, num_inference_steps=self.steps, guidance_scale=self.guidance, sampler=self.sampler
        ).images
        path = save_grid(run_dir(trainer) / "samples" / f"{tag}.png", images, self.per_class)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="samples", images=[grid_image(images, self.per_class)], caption=[tag])
        return path
