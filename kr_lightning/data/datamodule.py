"""ImageDataModule: the real train / val / test splits of any registered dataset, loaders, seeded augmentation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from kr_lightning.data.arrays import SPLITS, Split, to_tensor
from kr_lightning.data.augment import augment
from kr_lightning.data.info import DatasetInfo
from kr_lightning.data.poisson import poisson_loader
from kr_lightning.data.registry import dataset_info, load_splits, resolve_root
from kr_lightning.errors import ConfigError, DataError
from kr_lightning.seeding import AUGMENTATION, make_rng


class ImageDataModule(L.LightningDataModule):
    """The real train / val / test splits of one dataset, served as ``(x, y)`` batches.

    ``x`` is ``float32 (B, C, H, W)`` in ``[-1, 1]``, ``y`` is ``int64 (B,)``. The dataset is chosen by ``flag``
    (see :mod:`kr_lightning.data.registry`); experiment configs take it, with the dataset's label-preserving
    augmentation, from a data fragment ``experiments/data/<flag>.yaml``. The train order and the augmentation are
    pure functions of ``(seed, epoch)`` and ``(seed, global_step, rank)``, so a run resumed from a checkpoint
    sees exactly the batches an uninterrupted run would have seen.

    Privacy audit contract: the ``train`` split holds the members (every image the teacher and the generator
    trained on); ``val`` and ``test`` hold non-members (see :attr:`nonmember_splits`).

    Args:
        flag: Dataset name: a 2D MedMNIST flag, ``digits``, ``fashionmnist``, ``cifar10`` or ``cifar100``.
        root: Folder with the dataset's files; ``None`` uses ``$KR_DATA_ROOT``, then ``./data/<source>``.
        size: MedMNIST image size of the file (28, 64, 128 or 224).
        download: Fetch missing files (MedMNIST through ``medmnist``, the others through torchvision; needs
            network).
        split_seed: Seed of the train / val partition where the dataset has no official val split (digits and
            torchvision's sets); keep it fixed across runs.
        batch_size: Training batch size (per device).
        eval_batch_size: Batch size for val / test / predict.
        num_workers: DataLoader workers (0 keeps everything in the main process; the data is in memory).
        max_shift: Training augmentation: random translation of up to this many pixels (0 disables).
        hflip: Training augmentation: random horizontal flips (only where the dataset's labels allow them).
        vflip: Training augmentation: random vertical flips (only where the dataset's labels allow them).
        use_shift: Apply ``max_shift`` in training; a generator recipe turns it off (a shifted image with a filled
            border is not a sample of the data distribution, while a label-preserving flip is).
        seed: Seed of the shuffling and augmentation; ``None`` takes the run's ``seed_everything``.
        sampling: How training batches are drawn: ``shuffle`` (a seeded permutation each epoch, batches of
            ``batch_size``) or ``poisson`` (each image joins each batch with probability ``q``, expected batch size
            about ``batch_size``: what DP-SGD's accounting assumes; one device only; :mod:`kr_lightning.data.poisson`).
    """

    member_split = "train"
    nonmember_splits = ("val", "test")

    def __init__(
        self,
        *,
        flag: str | None = None,
        root: str | None = None,
        size: int = 28,
        download: bool = False,
        split_seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        max_shift: int = 0,
        hflip: bool = False,
        vflip: bool = False,
        use_shift: bool = True,
        seed: int | None = None,
        sampling: Literal["shuffle", "poisson"] = "shuffle",
    ) -> None:
        super().__init__()
        if flag is None:
            raise ConfigError(
                "no dataset given: add its data fragment, e.g. --config experiments/data/breastmnist.yaml "
                "(one file per dataset under experiments/data/), or set --data.flag"
            )
        if batch_size < 1 or eval_batch_size < 1:
            raise ConfigError(f"batch sizes must be >= 1; got {batch_size} and {eval_batch_size}")
        if max_shift < 0:
            raise ConfigError(f"max_shift must be >= 0; got {max_shift}")
        self._info = dataset_info(flag, size)
        for name, on in (("hflip", hflip), ("vflip", vflip)):
            if on and name not in self._info.flips:
                raise ConfigError(
                    f"{name}: true changes the labels of {flag} (label-preserving flips: "
                    f"{list(self._info.flips) or 'none'}); set {name}: false in its data fragment"
                )
        self.flag = flag
        self.root = root
        self.size = size
        self.download = download
        self.split_seed = split_seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.max_shift = max_shift if use_shift else 0
        self.hflip = hflip
        self.vflip = vflip
        self.seed = 0 if seed is None else seed
        self.sampling = sampling
        self._splits: dict[str, Split] | None = None
        self._tensors: dict[str, TensorDataset] = {}

    # -- metadata, known at __init__ so that LightningCLI can link it to the model --------------------------
    @property
    def info(self) -> DatasetInfo:
        """Dataset metadata (from the registry)."""
        return self._info

    @property
    def num_classes(self) -> int:
        """Number of classes K."""
        return self.info.num_classes

    @property
    def in_channels(self) -> int:
        """Image channels (1 or 3)."""
        return self.info.in_channels

    @property
    def image_size(self) -> int:
        """Side of the square images."""
        return self.info.image_size

    @property
    def name(self) -> str:
        """Dataset name used in run folders and reports."""
        return self.info.flag

    # -- data --------------------------------------------------------------------------------------------------
    def dataset_kwargs(self) -> dict[str, Any]:
        """The options that define this dataset and its augmentation (to build another module on the same data)."""
        keys = ("flag", "root", "size", "download", "split_seed", "eval_batch_size", "num_workers", "max_shift")
        return {k: getattr(self, k) for k in keys} | {"hflip": self.hflip, "vflip": self.vflip}

    @property
    def data_root(self) -> Path:
        """The folder the dataset's files are read from (unused for the embedded digits)."""
        return resolve_root(self.root, self.info)

    def load_splits(self) -> dict[str, Split]:
        """Read the three splits from their source (validated)."""
        return load_splits(self.info, root=self.root, download=self.download, split_seed=self.split_seed)

    def prepare_data(self) -> None:
        """Check (and where configured, download) the source once, on rank 0."""
        self.load_splits()

    def setup(self, stage: str | None = None) -> None:
        """Load the splits once and keep them as tensors."""
        if self._splits is None:
            self._splits = self.load_splits()
            counts = np.bincount(self._splits["train"].labels, minlength=self.num_classes)
            if (counts == 0).any():
                empty = [f"{k} ({self.info.labels[k]})" for k in np.flatnonzero(counts == 0)]
                raise DataError(
                    f"{self.name}: the train split has no image of class {', '.join(empty)}; every one of the "
                    f"{self.num_classes} classes needs training images (check the file or the flag)"
                )
            for name, split in self._splits.items():
                self._tensors[name] = TensorDataset(to_tensor(split.images), torch.from_numpy(split.labels))

    def split(self, name: str) -> Split:
        """The raw uint8 images and labels of ``name`` in ``("train", "val", "test")``."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}; got {name!r}")
        self.setup()
        assert self._splits is not None
        return self._splits[name]

    def set_train(self, split: Split) -> None:
        """Replace the training split (used by the privacy audit to train reference models on a subset)."""
        self.setup()
        assert self._splits is not None
        self._splits = {**self._splits, "train": split}
        self._tensors["train"] = TensorDataset(to_tensor(split.images), torch.from_numpy(split.labels))

    def tensors(self, name: str) -> TensorDataset:
        """``(x, y)`` tensors of a split (float ``[-1, 1]`` images, int64 labels)."""
        self.split(name)
        return self._tensors[name]

    # -- loaders -----------------------------------------------------------------------------------------------
    def _sampler(self, dataset: TensorDataset) -> DistributedSampler:
        """A per-epoch seeded shuffle; under DDP each rank takes its own part of the split."""
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        return DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        """Shuffled (or Poisson-sampled) training split; the batches are a function of ``seed`` and the epoch."""
        ds = self.tensors("train")
        if self.sampling == "poisson":
            if self.trainer is not None and self.trainer.world_size > 1:
                raise ConfigError(
                    f"sampling: poisson (DP-SGD) runs on one device; got {self.trainer.world_size} processes. "
                    "Set --trainer.devices=1."
                )
            return poisson_loader(ds, batch_size=self.batch_size, seed=self.seed, num_workers=self.num_workers)
        return DataLoader(ds, batch_size=self.batch_size, sampler=self._sampler(ds), num_workers=self.num_workers)

    def _eval_loader(self, name: str) -> DataLoader:
        return DataLoader(self.tensors(name), batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        """The real validation split, in order."""
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        """The real test split, in order."""
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """The real test split, in order."""
        return self._eval_loader("test")

    def augment(self, x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
        """This data module's training augmentation applied to a batch."""
        return augment(x, rng, max_shift=self.max_shift, hflip=self.hflip, vflip=self.vflip)

    def augmentation_rng(self, step: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
        """The augmentation rng of training step ``step`` on ``rank`` (stream ``AUGMENTATION``)."""
        return make_rng(self.seed, step, rank, stream=AUGMENTATION, device=device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:  # noqa: ANN401 - Lightning batch
        """Augment training batches on the device with an rng keyed by ``(seed, global_step, rank)``."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return batch
        x, *rest = batch
        rng = self.augmentation_rng(trainer.global_step, trainer.global_rank, device=x.device)
        return (self.augment(x, rng), *rest)
