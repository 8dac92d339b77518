"""Every dataset kr_lightning knows, by name: its metadata and the loader of its three splits.

Names are MedMNIST's flags (the eleven 2D single-label sets), ``digits`` (embedded, offline) and torchvision's
``fashionmnist``, ``cifar10`` and ``cifar100``. ``ImageDataModule(flag=...)`` is the only caller of the loaders.
"""

from __future__ import annotations

import os
from pathlib import Path

from medmnist.info import INFO as MEDMNIST_INFO

from kr_lightning.data.arrays import Split
from kr_lightning.data.digits import load_digits_splits
from kr_lightning.data.info import DIGITS, MEDMNIST_FLIPS, DatasetInfo, medmnist_info
from kr_lightning.data.medmnist import DATA_ROOT_ENV, load_medmnist
from kr_lightning.data.natural import NATURAL_INFO, load_natural
from kr_lightning.errors import ConfigError

DEFAULT_ROOTS = {"medmnist": "data/medmnist", "torchvision": "data/torchvision"}
DATASETS: tuple[str, ...] = ("digits", *sorted(MEDMNIST_FLIPS), *NATURAL_INFO)


def dataset_info(flag: str, size: int = 28) -> DatasetInfo:
    """Metadata of dataset ``flag`` (``size`` applies to MedMNIST, whose files come in 28, 64, 128, 224 px).

    Raises:
        ConfigError: An unknown name, or a size the dataset does not come in.
    """
    if flag == "digits":
        return DIGITS
    if flag in NATURAL_INFO:
        return NATURAL_INFO[flag]
    if flag in MEDMNIST_FLIPS:
        return medmnist_info(flag, size)
    if flag in MEDMNIST_INFO:
        raise ConfigError(
            f"MedMNIST's {flag} ({MEDMNIST_INFO[flag]['task']}{', 3D' if '3d' in flag else ''}) is unsupported: "
            f"kr_lightning trains on 2D single-label datasets: {list(DATASETS)}"
        )
    raise ConfigError(f"unknown dataset {flag!r}; expected one of {list(DATASETS)} (experiments/data/<flag>.yaml)")


def resolve_root(root: str | None, info: DatasetInfo) -> Path:
    """The data folder: ``root`` if given, else ``$KR_DATA_ROOT``, else ``./data/<source>``."""
    return Path(root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_ROOTS.get(info.source, "data")).expanduser()


def load_splits(info: DatasetInfo, *, root: str | None, download: bool, split_seed: int) -> dict[str, Split]:
    """Read (and where allowed, download) the train / val / test splits of ``info``'s dataset, validated."""
    if info.source == "embedded":
        return load_digits_splits(split_seed)
    folder = resolve_root(root, info)
    if info.source == "torchvision":
        return load_natural(info.flag, folder, download=download, split_seed=split_seed)
    return load_medmnist(info, folder, download=download)
