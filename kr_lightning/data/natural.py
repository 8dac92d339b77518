"""The paper's natural-image datasets (Fashion-MNIST, CIFAR-10, CIFAR-100), read through torchvision.

Files and format. The data is read by torchvision's own dataset classes from torchvision's on-disk layout under
``root``; kr_lightning only converts the result to uint8 numpy arrays (:class:`~kr_lightning.data.arrays.Split`)
and validates it with :func:`~kr_lightning.data.arrays.check_split`. Fashion-MNIST is stored as raw idx files
(no pickle). CIFAR's official format *is* Python pickle (``cifar-*-python.tar.gz``); torchvision unpickles it
itself, after checking the MD5 of every batch file against the checksums of the official release, so only the
official files are ever unpickled. This is the one exception to the package's ``allow_pickle=False`` contract:
the format allows nothing else.

Splits. The official test split is the test split. A stratified ``val_fraction`` of the official train split,
fixed by ``split_seed`` (independent of the run's seed), is held out as the val split; the rest is train. With
the default ``val_fraction=0.1`` that gives the sizes in :data:`NATURAL_INFO`.

Tests. Because torchvision checks the CIFAR checksums, tests write tiny files in torchvision's exact on-disk
format and monkeypatch the class-level checksum lists (``CIFAR10.train_list``, ``test_list``, ``meta``) to
the MD5s of those files: the real read path, integrity check included, runs unchanged. Reading the pickles
ourselves to dodge the checksums would test a different code path and unpickle unverified files.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from kr_lightning.data.arrays import Split, check_split
from kr_lightning.data.info import DatasetInfo
from kr_lightning.data.medmnist import DATA_ROOT_ENV
from kr_lightning.errors import ConfigError, DataError, MissingInputError

_CIFAR100_LABELS = tuple(
    """
    apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel can
    castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur dolphin
    elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion lizard lobster
    man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree pear pickup_truck
    pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea seal shark shrew skunk
    skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table tank telephone television tiger
    tractor train trout tulip turtle wardrobe whale willow_tree wolf woman worm
    """.split()
)  # CIFAR-100 ``meta["fine_label_names"]``, in label order

NATURAL_INFO: MappingProxyType[str, DatasetInfo] = MappingProxyType(
    {
        "fashionmnist": DatasetInfo(
            flag="fashionmnist",
            num_classes=10,
            in_channels=1,
            image_size=28,
            task="multi-class",
            labels=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            n_samples={"train": 54_000, "val": 6_000, "test": 10_000},
            source="torchvision",
            flips=("hflip",),
        ),
        "cifar10": DatasetInfo(
            flag="cifar10",
            num_classes=10,
            in_channels=3,
            image_size=32,
            task="multi-class",
            labels=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
            n_samples={"train": 45_000, "val": 5_000, "test": 10_000},
            source="torchvision",
            flips=("hflip",),
        ),
        "cifar100": DatasetInfo(
            flag="cifar100",
            num_classes=100,
            in_channels=3,
            image_size=32,
            task="multi-class",
            labels=_CIFAR100_LABELS,
            n_samples={"train": 45_000, "val": 5_000, "test": 10_000},
            source="torchvision",
            flips=("hflip",),
        ),
    }
)
"""Metadata of the torchvision datasets; ``n_samples`` is the split :func:`load_natural` makes by default."""

# flag -> (display name, torchvision class name, what torchvision expects under root)
_SOURCES: MappingProxyType[str, tuple[str, str, str]] = MappingProxyType(
    {
        "fashionmnist": (
            "Fashion-MNIST",
            "FashionMNIST",
            "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte (the 4 unpacked idx files)",
        ),
        "cifar10": (
            "CIFAR-10",
            "CIFAR10",
            "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (unpacked cifar-10-python.tar.gz)",
        ),
        "cifar100": (
            "CIFAR-100",
            "CIFAR100",
            "cifar-100-python/{train,test,meta} (unpacked cifar-100-python.tar.gz)",
        ),
    }
)


def load_natural(
    flag: str,
    root: Path,
    *,
    download: bool,
    split_seed: int = 0,
    val_fraction: float = 0.1,
) -> dict[str, Split]:
    """Read a torchvision dataset and split it into train / val / test.

    Args:
        flag: ``"fashionmnist"``, ``"cifar10"`` or ``"cifar100"``.
        root: Folder holding torchvision's files for the dataset (the ``root`` torchvision is given).
        download: Let torchvision fetch missing files (needs network); present files are not fetched again.
        split_seed: Seed of the stratified val split (keep it fixed across runs and seeds).
        val_fraction: Share of the official train split held out as val, in ``(0, 1)``.

    Returns:
        ``{"train", "val", "test"}`` splits: uint8 images ``(N, 28, 28)`` (Fashion-MNIST) or ``(N, 32, 32, 3)``
        (CIFAR) and int64 labels ``(N,)``. Train and val keep the official order.

    Raises:
        ConfigError: Unknown ``flag`` or a ``val_fraction`` that leaves a split without every class.
        MissingInputError: The files are missing or incomplete, or the download failed.
        DataError: The files hold images or labels that do not fit the dataset.
    """
    if flag not in NATURAL_INFO:
        raise ConfigError(f"unknown torchvision dataset {flag!r}; expected one of {sorted(NATURAL_INFO)}")
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction must lie in (0, 1); got {val_fraction}")
    info = NATURAL_INFO[flag]
    train_images, train_labels = _read(flag, Path(root), train=True, download=download)
    test_images, test_labels = _read(flag, Path(root), train=False, download=False)  # the train call fetched all

    n_val = round(val_fraction * len(train_labels))
    if min(n_val, len(train_labels) - n_val) < info.num_classes:
        raise ConfigError(
            f"val_fraction={val_fraction} splits the {len(train_labels)} {flag} train images into "
            f"{len(train_labels) - n_val} train / {n_val} val; both need at least {info.num_classes} (one per class)"
        )
    index = np.arange(len(train_labels))
    train, val = (
        np.sort(part)  # keep the official order within each split
        for part in train_test_split(index, test_size=n_val, stratify=train_labels, random_state=split_seed)
    )
    source = f"torchvision {_SOURCES[flag][1]} in {Path(root).resolve()}"
    parts = {
        "train": (train_images[train], train_labels[train]),
        "val": (train_images[val], train_labels[val]),
        "test": (np.ascontiguousarray(test_images), test_labels),
    }
    return {
        name: check_split(name, images, labels, num_classes=info.num_classes, source=source)
        for name, (images, labels) in parts.items()
    }


def _read(flag: str, root: Path, *, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    """One official split as uint8 images ``(N, H, W[, 3])`` and int64 labels ``(N,)``."""
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, _SOURCES[flag][1])
    try:
        dataset: Any = dataset_class(str(root), train=train, download=download)
    # RuntimeError: files missing or failing their checksum, or (MNIST family) every mirror failed to download;
    # OSError: urllib's URLError and socket errors, which escape the CIFAR download unwrapped.
    except (RuntimeError, OSError) as err:
        raise MissingInputError(_missing_message(flag, root, err, download=download)) from err
    # FashionMNIST holds torch tensors (uint8 (N, 28, 28), int64 (N,)); CIFAR numpy uint8 (N, 32, 32, 3) and a list.
    data, targets = dataset.data, dataset.targets
    images = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    labels = targets.numpy().astype(np.int64) if isinstance(targets, torch.Tensor) else np.asarray(targets, np.int64)
    info = NATURAL_INFO[flag]
    size = info.image_size
    expected = (size, size) if info.in_channels == 1 else (size, size, info.in_channels)
    if images.shape[1:] != expected:
        raise DataError(f"torchvision {_SOURCES[flag][1]} in {root}: images {images.shape[1:]}, expected {expected}")
    if tuple(dataset.classes) != info.labels:
        raise DataError(
            f"torchvision {_SOURCES[flag][1]} in {root}: class names {list(dataset.classes)[:5]}... "
            f"differ from the official list {list(info.labels)[:5]}..."
        )
    return images, labels


def _missing_message(flag: str, root: Path, err: Exception, *, download: bool) -> str:
    """The one message for missing files and failed downloads: what, where, and the two ways to fix it."""
    name, _, expects = _SOURCES[flag]
    detail = " ".join(str(err).split())  # torchvision's multi-mirror report spans several lines
    reason = f"the download failed: {detail}" if download else f"torchvision: {detail}"
    return (
        f"{name} ({flag}) not found in {root.resolve()} ({reason}).\n"
        f"torchvision expects {expects} in that folder. Provide it in one of two ways:\n"
        f"  1. put torchvision's files in that folder, or point the data module at the folder that holds them: "
        f"--data.root=/path/to/folder or export {DATA_ROOT_ENV}=/path/to/folder;\n"
        f"  2. on a machine with network access, add --data.download=true to fetch them with torchvision."
    )
