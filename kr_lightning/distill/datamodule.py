"""GKDDataModule: a synthetic training set regenerated every few epochs, labelled by a frozen teacher."""

from __future__ import annotations

import functools
import time
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from kr_lightning.data.augment import add_noise, check_view, mixup
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill import cache
from kr_lightning.distill.deferred import DeferredDataset
from kr_lightning.distill.plan import KNOBS, SyntheticPlan, resolve_knobs, selection_winner
from kr_lightning.distill.schedule import check_schedule, set_index
from kr_lightning.distill.synthesis import (
    balanced_labels,
    label_stats,
    prior_labels,
    set_size,
    shard_size,
    synthesize,
    teacher_logits,
)
from kr_lightning.errors import ConfigError
from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.fit_checks import check_fits_data
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.loading import load_classifier, load_generator
from kr_lightning.models.sampling import SamplerKind
from kr_lightning.models.speedups import GenPrecision, wants_bf16
from kr_lightning.seeding import GENERATION, MIXUP, NOISE, SHUFFLE, derive_seed, make_rng


class GKDDataModule(ImageDataModule):
    """Synthetic train batches ``(x, teacher_logits, y)``; real val / test batches ``(x, y)``.

    Every ``regenerate_every`` epochs a fresh class-balanced set of ``multiplier x |real train|`` images is drawn
    from the frozen generator (``0`` draws one static set). Set block ``b = epoch // regenerate_every`` on rank
    ``r`` is a pure function of ``(seed, b, r)``: a run resumed from a checkpoint regenerates exactly what the
    uninterrupted run saw, and under DDP every rank draws its own equal-size, disjoint shard (each rank iterates its
    whole shard; Lightning keeps the per-rank sampler given here). ``y`` is the generator's class;
    ``teacher_logits`` (temperature 1) come from the frozen teacher, computed on the augmented view the student
    sees when ``label_on_view`` (augmentation: the real data module's). Without a teacher they are zeros and the
    student must use hard labels (``alpha: 1``).

    The generator and the teacher live here, not in the student: they are never in its optimizer or checkpoint,
    stay in eval mode and run without gradients.

    It is the real dataset's :class:`ImageDataModule` (same ``flag``, augmentation and val / test splits, so the
    same data fragment configures it) whose train split is replaced by synthetic sets; the real train split only
    sets the synthetic set size and, with ``class_balance: real``, its class mix.

    Args:
        generator: Generator checkpoint or export folder (``None``: taken from ``selection``).
        teacher_ckpt: Teacher checkpoint; ``None`` for hard-label students.
        selection: ``selection.json`` written by ``python -m kr_lightning select``: supplies the generator and the
            sampling knobs left unset here.
        regenerate_every: Epochs between regenerations; ``0`` = one static set.
        pool_sets: Pool mode when > 1: keep this many sets and train on a different one each period, regenerating
            a ``pool_refresh`` fraction of them per cycle (see :mod:`kr_lightning.distill.schedule`).
        pool_refresh: Fraction of the pool regenerated per cycle in pool mode.
        multiplier: Synthetic set size as a multiple of the real train split (ignored with ``counts``).
        counts: Explicit images per class (summed over ranks).
        class_balance: Class mix of the synthetic sets when ``counts`` is not given: ``uniform`` (METHOD.md's
            class-balanced sets) or ``real`` (the real train split's class frequencies).
        steps: Sampler steps (``None``: selection, else the generator's default).
        guidance: Guidance scale (``None``: selection, else the generator's default).
        sampler: Sampler kind (``None``: selection, else the generator's default).
        guidance_interval: Guide only at noise levels ``lo < sigma <= hi`` (``None``: selection, else every step;
            ``[0, .inf]`` guides every step whatever the selection chose).
        label_on_view: Label each batch on its augmented view (else once per generated set).
        mixup: Mix each augmented image with a batch partner, ``lam ~ Beta(mixup, mixup)`` (``0``: off), for the
            teacher to label (needs ``teacher_ckpt`` and ``label_on_view``; :func:`kr_lightning.data.augment.mixup`).
        noise: Gaussian pixel noise added to each training view after augmentation and mixing, before the teacher
            labels it (``0``: off; :func:`kr_lightning.data.augment.add_noise`).
        noise_grain: Correlation length of that noise in pixels (``0``: i.i.d. pixels).
        batch_size: Student batch size.
        gen_batch_size: Images per denoising batch.
        channels_last: Run the generator's convolutions channels-last (faster on many CPUs).
        compile_unet: ``torch.compile`` the generator's UNet (slow once, faster for every later set).
        gen_precision: ``32-true``, or ``bf16-mixed`` to run the generator's UNet under bfloat16 autocast (much
            faster where the CPU or GPU has bf16 units; images change by ~1e-2 per pixel, so the cache keys it;
            elsewhere it warns and stays float32).
        cache_dir: Keep every generated set here and reuse it when the same set is asked for again (same
            generator file, knobs, seed, set index, rank and labels); ``None`` keeps nothing on disk.
        seed: Seed of generation and shuffling; ``None`` takes the run's ``seed_everything``.
        **kwargs: The real dataset's options (:class:`ImageDataModule`: ``flag``, ``root``, augmentation, ...).
    """

    def __init__(
        self,
        generator: str | None = None,
        teacher_ckpt: str | None = None,
        selection: str | None = None,
        regenerate_every: int = 1,
        pool_sets: int = 1,
        pool_refresh: float = 1.0,
        multiplier: float = 1.0,
        counts: list[int] | None = None,
        class_balance: Literal["uniform", "real"] = "uniform",
        steps: int | None = None,
        guidance: float | None = None,
        sampler: SamplerKind | None = None,
        guidance_interval: list[float] | None = None,
        label_on_view: bool = True,
        mixup: float = 0.0,
        noise: float = 0.0,
        noise_grain: float = 0.0,
        batch_size: int = 64,
        gen_batch_size: int = 256,
        channels_last: bool = False,
        compile_unet: bool = False,
        gen_precision: GenPrecision = "32-true",
        cache_dir: str | None = None,
        seed: int | None = None,
        **kwargs: Any,  # noqa: ANN401 - the real dataset's options of ImageDataModule (CLI-resolved)
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, **kwargs)
        check_schedule(regenerate_every, pool_sets, pool_refresh)
        if multiplier <= 0:
            raise ConfigError(f"multiplier must be > 0; got {multiplier}")
        check_view(mixup, noise, teacher_labels_view=teacher_ckpt is not None and label_on_view, grain=noise_grain)
        if generator is None and selection is None:
            raise ConfigError(
                "GKDDataModule needs generator (checkpoint or export folder) or selection (selection.json)"
            )
        self.generator_path = generator
        self.teacher_ckpt = teacher_ckpt
        self.selection = selection
        self.regenerate_every = regenerate_every
        self.pool_sets = pool_sets
        self.pool_refresh = pool_refresh
        self.multiplier = multiplier
        self.counts = counts
        self.class_balance = class_balance
        self.knobs: dict[str, Any] = dict(zip(KNOBS, (steps, guidance, sampler, guidance_interval), strict=True))
        self.label_on_view = label_on_view
        self.mixup = mixup
        self.noise = noise
        self.noise_grain = noise_grain
        self.gen_batch_size = gen_batch_size
        self.speedups = {"channels_last": channels_last, "compile": compile_unet, "bf16": wants_bf16(gen_precision)}
        self.cache_dir = cache_dir
        self.generator: ClassConditionalPipeline | None = None
        self.teacher: ClassifierModule | None = None
        self._cache: tuple[int, DeferredDataset] | None = None

    @property
    def has_teacher(self) -> bool:
        """Whether soft labels are available."""
        return self.teacher_ckpt is not None

    # -- setup ---------------------------------------------------------------------------------------------------
    def selection_winner(self) -> dict[str, Any] | None:
        """The winner of ``selection.json`` (``None`` without a selection)."""
        return selection_winner(self.selection)

    def setup(self, stage: str | None = None) -> None:
        """Load the real splits, the frozen generator and teacher; check the Trainer's reload setting."""
        super().setup(stage)
        trainer = self.trainer
        if trainer is not None and stage in ("fit", None) and self.regenerate_every > 0:
            reload = trainer.reload_dataloaders_every_n_epochs
            if reload < 1 or self.regenerate_every % reload:
                raise ConfigError(
                    f"GKDDataModule regenerates every {self.regenerate_every} epoch(s) but the Trainer reloads the "
                    f"train loader every {reload} epoch(s); set trainer.reload_dataloaders_every_n_epochs: 1"
                )
        if self.generator is not None:
            return
        device = trainer.strategy.root_device if trainer is not None else torch.device("cpu")
        winner = self.selection_winner()
        path = self.generator_path or (winner or {}).get("generator")
        self.generator = load_generator(path, device=device).optimize(**self.speedups)
        g = self.generator
        check_fits_data("generator", g.source, g.num_classes, g.in_channels, g.image_size, self.info)
        defaults = {"steps": g.sample_steps, "guidance": g.sample_guidance, "sampler": g.sampler}
        self.knobs = resolve_knobs(self.knobs, winner, defaults)
        if self.teacher_ckpt is not None:
            self.teacher = load_classifier(self.teacher_ckpt, device=device)
            hp = self.teacher.hparams
            check_fits_data("teacher", self.teacher_ckpt, hp.num_classes, hp.in_channels, hp.image_size, self.info)
        rank_zero_info(f"GKD: generator {g.source}, sampling {self.knobs}, teacher {self.teacher_ckpt}")

    def plan(self) -> SyntheticPlan:
        """The resolved generator, knobs, class counts and seed of this module's sets (after :meth:`setup`)."""
        assert self.generator is not None, "call setup() first"
        counts = np.bincount(self.local_labels(1).numpy(), minlength=self.num_classes)
        return SyntheticPlan(
            generator=str(self.generator.source),
            steps=int(self.knobs["steps"]),
            guidance=float(self.knobs["guidance"]),
            sampler=str(self.knobs["sampler"]),
            counts=tuple(int(c) for c in counts),
            seed=self.seed,
            guidance_interval=self.knobs["guidance_interval"],
        )

    # -- the synthetic set ---------------------------------------------------------------------------------------
    def set_index(self, epoch: int) -> int:
        """Which generated set epoch ``epoch`` trains on (see :mod:`kr_lightning.distill.schedule`)."""
        return set_index(
            epoch,
            regenerate_every=self.regenerate_every,
            pool_sets=self.pool_sets,
            pool_refresh=self.pool_refresh,
            seed=self.seed,
        )

    def local_labels(self, world_size: int) -> torch.Tensor:
        """The generator classes of one rank's shard (class-balanced, equal size on every rank)."""
        if self.counts is not None:
            if len(self.counts) != self.num_classes:
                raise ConfigError(f"counts needs one entry per class ({self.num_classes}); got {self.counts}")
            per_rank = [shard_size(c, world_size) if c else 0 for c in self.counts]
            return torch.repeat_interleave(torch.arange(self.num_classes), torch.tensor(per_rank))
        train = self.split("train").labels
        n_local = shard_size(set_size(self.multiplier, len(train)), world_size)
        if self.class_balance == "uniform":
            return balanced_labels(self.num_classes, n_local)
        return prior_labels(np.bincount(train, minlength=self.num_classes), n_local)

    def image_knobs(self) -> dict[str, Any]:
        """The sampling knobs the images depend on (the cache key).

        Steps, guidance, sampler, the guidance interval when set and, when not float32, the precision the generator
        actually runs in (so float32 caches guided at every step keep the keys they had before these options).
        """
        assert self.generator is not None, "call setup() first"
        dtype = self.generator.autocast
        knobs = {k: v for k, v in self.knobs.items() if not (k == "guidance_interval" and v is None)}
        return knobs if dtype is None else knobs | {"autocast": str(dtype).removeprefix("torch.")}

    def generation_rng(self, set_index: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The sampling-noise rng of set ``set_index`` on ``rank`` (stream ``GENERATION``)."""
        return make_rng(self.seed, set_index, rank, stream=GENERATION, device=device)

    def images(self, set_index: int, rank: int, world_size: int, progress: bool = False) -> torch.Tensor:
        """The images of set ``(set_index, rank)``: generated, or read from ``cache_dir`` when cached there."""
        assert self.generator is not None, "call setup() first"
        labels = self.local_labels(world_size)
        device = self.generator.device
        path = None
        if self.cache_dir is not None:
            key = dict(knobs=self.image_knobs(), seed=self.seed, set_index=set_index, rank=rank, labels=labels)
            path = cache.cache_file(self.cache_dir, self.generator.source, device.type, **key)
            if path.is_file():
                return cache.load(path, device)
        rng = self.generation_rng(set_index, rank, device=device)
        x = synthesize(self.generator, labels, rng, batch_size=self.gen_batch_size, progress=progress, **self.knobs)
        if path is not None:
            cache.save(path, x, labels)
        return x

    def generate(self, set_index: int, rank: int, world_size: int, progress: bool = False) -> TensorDataset:
        """Synthetic set ``set_index`` of ``rank``: ``(x, teacher_logits, y)`` on the CPU; a pure function."""
        assert self.generator is not None, "call setup() first"
        device = self.generator.device
        labels = self.local_labels(world_size)
        start = time.perf_counter()
        x = self.images(set_index, rank, world_size, progress=progress)
        gen_seconds = time.perf_counter() - start
        if self.teacher is not None:
            logits = teacher_logits(self.teacher, x)
            stats = label_stats(logits, labels)
        else:
            logits, stats = torch.zeros(len(labels), self.num_classes, device=device), {}
        self.last_stats = {
            "gen_seconds": gen_seconds,
            "label_seconds": time.perf_counter() - start - gen_seconds,
            "n_images": float(len(labels)),
            **stats,
        }
        return TensorDataset(x.cpu(), logits.cpu(), labels)

    def train_dataloader(self) -> DataLoader:
        """The current synthetic set, shuffled per epoch (regenerated when a new set index starts)."""
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        index = self.set_index(epoch)
        if self._cache is None or self._cache[0] != index:
            progress = trainer is not None and trainer.is_global_zero and trainer.progress_bar_callback is not None
            build = functools.partial(self._generate_and_log, trainer, index, rank, world, progress)
            self._cache = (index, DeferredDataset(len(self.local_labels(world)), build))
        dataset = self._cache[1]
        sampler = DistributedSampler(
            dataset, num_replicas=1, rank=0, shuffle=True, seed=derive_seed(self.seed, rank, stream=SHUFFLE)
        )
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler)

    def _generate_and_log(
        self, trainer: L.Trainer | None, index: int, rank: int, world: int, progress: bool
    ) -> TensorDataset:
        """Generate set ``index`` (on the loader's first batch, see :class:`DeferredDataset`) and log its stats."""
        dataset = self.generate(index, rank, world, progress=progress)
        if trainer is not None:
            self._log_stats(trainer, index)
        return dataset

    def _log_stats(self, trainer: L.Trainer, index: int) -> None:
        metrics = {f"gkd/{k}": v for k, v in self.last_stats.items()} | {"gkd/set_index": float(index)}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        stats = self.last_stats
        rank_zero_info(f"GKD set {index}: {int(stats['n_images'])} images in {stats['gen_seconds']:.1f} s")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:  # noqa: ANN401 - Lightning batch
        """Augment (mix, add noise to) synthetic training batches, then have the teacher label that view."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        x, logits, y = batch
        step, rank = trainer.global_step, trainer.global_rank
        x = self.augment(x, self.augmentation_rng(step, rank, device=x.device))
        if self.mixup > 0:
            x, dominant = mixup(x, make_rng(self.seed, step, rank, stream=MIXUP, device=x.device), self.mixup)
            y = y[dominant]
        if self.noise > 0:
            rng = make_rng(self.seed, step, rank, stream=NOISE, device=x.device)
            x = add_noise(x, rng, self.noise, self.noise_grain)
        if self.teacher is not None and self.label_on_view:
            logits = teacher_logits(self.teacher, x)
        return x, logits, y
