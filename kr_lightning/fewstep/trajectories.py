"""TrajectoryDataModule: a teacher sampler's denoising paths, the training data of a few-step generator."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, TensorDataset

from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill import cache
from kr_lightning.distill.plan import resolve_knobs, selection_winner
from kr_lightning.distill.synthesis import balanced_labels
from kr_lightning.errors import ConfigError
from kr_lightning.fewstep.targets import nested_positions, student_scheduler
from kr_lightning.models.fit_checks import check_fits_data
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.loading import load_generator
from kr_lightning.models.sampling import SamplerKind, make_scheduler, sample_trajectory
from kr_lightning.seeding import TRAJECTORIES, make_rng

SPLIT_KEYS = {"train": 0, "val": 1}


def teacher_path(teacher: str | None, winner: dict[str, Any] | None) -> str:
    """The generator to distil: ``teacher`` if given, else the selection's winner."""
    path = teacher or (winner or {}).get("generator")
    if path is None:
        raise ConfigError("few-step distillation needs teacher (a generator checkpoint or export) or a selection")
    return str(path)


class TrajectoryDataModule(ImageDataModule):
    """The teacher's states at the student's timesteps, drawn once from the frozen teacher generator.

    Each path starts from fresh noise of a class-balanced label and runs the teacher sampler (``teacher_sampler``,
    ``teacher_steps``, guidance ``teacher_guidance`` on every step); the states at the student's DDIM timesteps and
    the final image are kept (:func:`kr_lightning.fewstep.targets.nested_positions`). Train batches are single
    steps ``(x_a, k, y, x_b)``: the state before student step ``k``, the class and the teacher's state one student
    step later. Val batches are whole paths ``(states, y)`` so that the student can be run free from the first
    noise to the image. No real image is used: the paths are a function of the teacher and the seed (stream
    ``TRAJECTORIES``, key 0 for train and 1 for val). ``cache_dir`` keeps them (a rerun or a resumed fit reuses
    them; the key covers the teacher file, the knobs, the seed and the labels).

    Args:
        teacher: The generator to distil: a ``DiffusionGenerator`` checkpoint or export folder (``None``: the
            selection's winner).
        selection: ``selection.json`` of the ``select`` stage: the generator and the sampler knobs left unset here.
        teacher_steps: Steps of the teacher sampler (``None``: the selection's, else the generator's default).
        teacher_sampler: Kind of the teacher sampler (``None``: as ``teacher_steps``).
        teacher_guidance: Guidance scale of the teacher, applied on every step (``None``: as ``teacher_steps``).
        student_steps: DDIM steps of the student; its timesteps must lie on the teacher's path.
        n_train: Training paths (``student_steps`` training pairs each).
        n_val: Validation paths.
        gen_batch_size: Paths denoised together.
        channels_last: Teacher convolutions channels-last (faster on many CPUs; same states to float rounding).
        compile_unet: ``torch.compile`` the teacher's UNet.
        cache_dir: Folder that keeps the drawn paths (``None``: nothing on disk).
        batch_size: Training pairs per batch.
        seed: Seed of the paths and the shuffling; ``None`` takes the run's ``seed_everything``.
        **kwargs: The real dataset's options (:class:`ImageDataModule`); only its classes, channels and size are
            used, to check that the teacher fits the dataset.
    """

    def __init__(
        self,
        teacher: str | None = None,
        selection: str | None = None,
        teacher_steps: int | None = None,
        teacher_sampler: SamplerKind | None = None,
        teacher_guidance: float | None = None,
        student_steps: int = 5,
        n_train: int = 4096,
        n_val: int = 256,
        gen_batch_size: int = 32,
        channels_last: bool = True,
        compile_unet: bool = False,
        cache_dir: str | None = None,
        batch_size: int = 64,
        seed: int | None = None,
        **kwargs: Any,  # noqa: ANN401 - the real dataset's options of ImageDataModule (CLI-resolved)
    ) -> None:
        super().__init__(batch_size=batch_size, seed=seed, **kwargs)
        if n_train < 1 or n_val < 1:
            raise ConfigError(f"n_train and n_val must be >= 1; got {n_train}, {n_val}")
        self.teacher_path = teacher
        self.selection = selection
        self.knobs: dict[str, Any] = {"steps": teacher_steps, "sampler": teacher_sampler, "guidance": teacher_guidance}
        self.student_steps = student_steps
        self.sizes = {"train": n_train, "val": n_val}
        self.gen_batch_size = gen_batch_size
        self.speedups = {"channels_last": channels_last, "compile": compile_unet}
        self.cache_dir = cache_dir
        self.paths: dict[str, TensorDataset] = {}
        self.provenance: dict[str, Any] = {}

    def setup(self, stage: str | None = None) -> None:
        """Draw (or reload) the train and val paths."""
        super().setup(stage)
        if self.paths:
            return
        winner = selection_winner(self.selection)
        teacher = load_generator(teacher_path(self.teacher_path, winner)).optimize(**self.speedups)
        defaults = {"steps": teacher.sample_steps, "guidance": teacher.sample_guidance, "sampler": teacher.sampler}
        knobs = resolve_knobs(self.knobs, winner, defaults)
        if knobs.pop("guidance_interval") is not None:
            raise ConfigError("the teacher sampler must guide every step; the selection has a guidance_interval")
        self.knobs = knobs
        check_fits_data(
            "generator", teacher.source, teacher.num_classes, teacher.in_channels, teacher.image_size, self.info
        )
        positions = self.positions(teacher)
        self.provenance = {"generator": teacher.source, **self.knobs, "paths": self.sizes["train"], "seed": self.seed}
        for split, n in self.sizes.items():
            labels = balanced_labels(teacher.num_classes, n)
            states = self._draw(teacher, split, labels)[:, positions]
            self.paths[split] = TensorDataset(states, labels)
        rank_zero_info(
            f"few-step distillation: {self.sizes} paths of {teacher.source} ({self.knobs}), states at teacher steps "
            f"{positions}"
        )

    def positions(self, teacher: ClassConditionalPipeline) -> list[int]:
        """Indices into the teacher's path of the student's timesteps and of the final image."""
        sampler = make_scheduler(teacher.scheduler.config, self.knobs["sampler"])
        sampler.set_timesteps(self.knobs["steps"])
        student = student_scheduler(teacher.scheduler.config, self.student_steps)
        return [*nested_positions(sampler.timesteps.tolist(), student.timesteps.tolist()), self.knobs["steps"]]

    def _draw(self, teacher: ClassConditionalPipeline, split: str, labels: torch.Tensor) -> torch.Tensor:
        key = SPLIT_KEYS[split]
        path = None
        if self.cache_dir is not None:
            knobs = {**self.knobs, "kind": "trajectory"}
            path = cache.cache_file(
                self.cache_dir, teacher.source, "cpu", knobs=knobs, seed=self.seed, set_index=key, rank=0, labels=labels
            )
            if path.is_file():
                return cache.load(path, torch.device("cpu"))
        rng = make_rng(self.seed, key, stream=TRAJECTORIES)
        states = sample_trajectory(
            teacher.unet,
            teacher.scheduler.config,
            labels,
            null_label=teacher.num_classes,
            rng=rng,
            batch_size=self.gen_batch_size,
            progress=True,
            **self.knobs,
        ).cpu()
        if path is not None:
            cache.save(path, states, labels)
        return states

    def train_pairs(self) -> TensorDataset:
        """Every student step of every training path as ``(x_a, k, y, x_b)``."""
        self.setup()
        states, labels = self.paths["train"].tensors
        steps = states.shape[1] - 1
        x_a = states[:, :-1].reshape(-1, *states.shape[2:])
        x_b = states[:, 1:].reshape(-1, *states.shape[2:])
        k = torch.arange(steps).repeat(len(states))
        return TensorDataset(x_a, k, labels.repeat_interleave(steps), x_b)

    def train_dataloader(self) -> DataLoader:
        """Shuffled single steps (a function of ``seed`` and the epoch)."""
        pairs = self.train_pairs()
        return DataLoader(pairs, batch_size=self.batch_size, sampler=self._sampler(pairs))

    def val_dataloader(self) -> DataLoader:
        """Whole validation paths ``(states, y)``, in order."""
        self.setup()
        return DataLoader(self.paths["val"], batch_size=self.eval_batch_size)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:  # noqa: ANN401 - Lightning batch
        """No augmentation: a flipped state is not on the teacher's path of the flipped noise."""
        return batch
