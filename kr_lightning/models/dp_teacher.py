"""DPTeacher: the teacher's recipe trained with DP-SGD (Opacus), the privacy yardstick for the GKD student.

DP-SGD clips every per-sample gradient to ``max_grad_norm`` and adds Gaussian noise of standard deviation
``noise_multiplier * max_grad_norm`` to their sum at each step; the training batches are Poisson samples of the
train split (``data.sampling: poisson``, :mod:`kr_lightning.data.poisson`). Opacus computes per-sample gradients
(hooks on the unchanged network), wraps the optimizer, and its accountant gives the ``noise_multiplier`` that
spends exactly ``epsilon`` at ``delta`` over the planned number of steps (``trainer.estimated_stepping_batches``).

What the guarantee covers: the train split, at the record level (add or remove one image). The val split picks
the best checkpoint and is not protected; the test split is never read in training. BatchNorm mixes samples of a
batch, so it is replaced by GroupNorm (``opacus.validators.ModuleValidator.fix``), and activations run out of
place (Opacus' backward hooks forbid in-place ones). The noise and the batches come
from seeded generators (streams ``DP_NOISE`` and ``POISSON``) so that runs are reproducible: fine for measuring,
not for a deployment, which needs Opacus' ``secure_mode`` (a cryptographic generator).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants.utils import get_noise_multiplier
from opacus.optimizers import DPOptimizer
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader

from kr_lightning.errors import ConfigError
from kr_lightning.models.networks import SmallCNN
from kr_lightning.models.teacher import Teacher
from kr_lightning.seeding import DP_NOISE, make_rng


class DPTeacher(Teacher):
    """Cross-entropy on real ``(x, y)`` Poisson batches, trained with DP-SGD to ``(epsilon, delta)``.

    Logs ``dp/epsilon`` (the budget spent so far, by the accountant) and ``dp/noise_multiplier`` every epoch.

    Args:
        num_classes: Number of classes K (linked from the data module).
        in_channels: Image channels (linked from the data module).
        image_size: Image side (linked from the data module).
        net: Backbone factory; its BatchNorm layers are replaced by GroupNorm.
        lr: Peak learning rate.
        weight_decay: Weight decay (decoupled for AdamW, L2 for SGD).
        warmup_fraction: Fraction of the steps with a linear learning-rate warm-up.
        schedule: ``cosine`` or ``constant`` after the warm-up.
        epsilon: Privacy budget epsilon (> 0) spent over the whole training run.
        delta: Privacy parameter delta; must be below 1 / N for the N training images. ``None``: ``1 / (10 N)``.
        max_grad_norm: Per-sample gradient clipping norm C.
        accountant: Opacus accountant: ``prv`` (PRV, tight) or ``rdp`` (Renyi DP).
        noise_seed: Seed of the noise generator; ``None`` takes the data module's seed (the run's seed).
        optimizer: The optimizer DP-SGD wraps: ``sgd`` (with ``momentum``; the usual DP-SGD choice) or ``adamw``.
        momentum: SGD momentum.
    """

    def __init__(
        self,
        num_classes: int = 2,
        in_channels: int = 1,
        image_size: int = 28,
        net: Callable[[int, int], nn.Module] = SmallCNN,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.05,
        schedule: Literal["cosine", "constant"] = "cosine",
        epsilon: float = 8.0,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: Literal["prv", "rdp"] = "prv",
        noise_seed: int | None = None,
        optimizer: Literal["sgd", "adamw"] = "sgd",
        momentum: float = 0.9,
    ) -> None:
        if not epsilon > 0:
            raise ConfigError(f"epsilon must be > 0 (the privacy budget); got {epsilon}")
        if delta is not None and not 0 < delta < 1:
            raise ConfigError(f"delta must lie in (0, 1 / N) for N training images; got {delta}")
        if not max_grad_norm > 0:
            raise ConfigError(f"max_grad_norm must be > 0 (the per-sample clipping norm); got {max_grad_norm}")
        super().__init__(num_classes, in_channels, image_size, net, lr, weight_decay, warmup_fraction, schedule)
        self.net = ModuleValidator.fix(self.net)
        for module in self.net.modules():  # Opacus' backward hooks forbid in-place activations on their outputs
            if isinstance(module, nn.ReLU | nn.LeakyReLU | nn.SiLU):
                module.inplace = False
        self.engine: PrivacyEngine | None = None
        self.noise_multiplier: float | None = None
        self.target_delta: float | None = None
        self._saved_accountant: dict[str, Any] | None = None
        self._noise_seed = 0

    def make_optimizer(self) -> torch.optim.Optimizer:
        """SGD with momentum, or AdamW, over the network's parameters."""
        hp = self.hparams
        if hp.optimizer == "adamw":
            return super().make_optimizer()
        return torch.optim.SGD(self.parameters(), lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Mean ``CE(logits(x), y)``; an empty Poisson batch gives 0 (Opacus then adds noise only)."""
        x, y = batch
        return F.cross_entropy(self(x), y, reduction="sum") / max(1, len(y))

    def _poisson_loader(self) -> DataLoader:
        """The run's training loader, checked to draw Poisson batches."""
        loader = self.trainer.datamodule.train_dataloader()
        if not isinstance(loader.batch_sampler, UniformWithReplacementSampler):
            raise ConfigError(
                "DPTeacher needs Poisson-sampled training batches (what the DP-SGD accountant assumes): set "
                "data.init_args.sampling: poisson (experiments/recipes/cpu/teacher_dp.yaml does)"
            )
        return loader

    def wrap_optimizer(self, optimizer: torch.optim.Optimizer) -> DPOptimizer:
        """Opacus' DP optimizer: per-sample clipping, noise calibrated to spend ``epsilon`` in the planned steps."""
        trainer, hp = self.trainer, self.hparams
        if trainer.world_size != 1 or trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                "DP-SGD here runs on one device without gradient accumulation (the accountant counts one noisy "
                f"step per Poisson batch); got {trainer.world_size} processes, accumulate_grad_batches="
                f"{trainer.accumulate_grad_batches}"
            )
        loader = self._poisson_loader()
        sample_rate, n = loader.batch_sampler.sample_rate, len(loader.dataset)
        delta = hp.delta if hp.delta is not None else 1 / (10 * n)
        if delta >= 1 / n:
            raise ConfigError(
                f"delta must be below 1 / N = {1 / n:.3g} for the {n} training images (a larger delta allows "
                f"releasing a whole record); got {delta}. Leave model.init_args.delta unset for 1 / (10 N)."
            )
        steps = int(trainer.estimated_stepping_batches)
        self.engine = PrivacyEngine(accountant=hp.accountant)
        self.noise_multiplier = get_noise_multiplier(
            target_epsilon=hp.epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=hp.accountant,
        )
        self.target_delta = delta
        seed = hp.noise_seed if hp.noise_seed is not None else int(getattr(trainer.datamodule, "seed", 0))
        _, private, _ = self.engine.make_private(
            module=self.net,
            optimizer=optimizer,
            data_loader=loader,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=hp.max_grad_norm,
            poisson_sampling=False,  # the data module already draws Poisson batches at this rate
            noise_generator=make_rng(seed, 0, stream=DP_NOISE),
            wrap_model=False,
        )
        if self._saved_accountant is not None:
            self.engine.accountant.load_state_dict(self._saved_accountant)
        self._noise_seed = seed
        return private

    def on_train_epoch_start(self) -> None:
        """Draw this epoch's DP noise from the generator of ``(seed, epoch)`` (a resumed run draws the same)."""
        optimizer = self.optimizers().optimizer
        optimizer.generator = make_rng(self._noise_seed, self.current_epoch, stream=DP_NOISE)

    def on_train_epoch_end(self) -> None:
        """Log the privacy spent so far."""
        assert self.engine is not None and self.target_delta is not None
        self.log("dp/epsilon", float(self.engine.get_epsilon(self.target_delta)))
        self.log("dp/noise_multiplier", float(self.noise_multiplier))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the accountant's history and the DP settings, so a resumed run accounts for the steps it made."""
        if self.engine is not None:
            checkpoint["dp"] = {
                "accountant": self.engine.accountant.state_dict(),
                "noise_multiplier": self.noise_multiplier,
                "delta": self.target_delta,
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check the checkpoint fits, and restore the accountant's history when training resumes."""
        super().on_load_checkpoint(checkpoint)
        self._saved_accountant = checkpoint.get("dp", {}).get("accountant")
