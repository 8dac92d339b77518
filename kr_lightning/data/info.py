"""Dataset metadata: one typed record per dataset, read from ``medmnist.INFO`` or the embedded table."""

from __future__ import annotations

from dataclasses import dataclass

from medmnist.info import INFO as MEDMNIST_INFO

from kr_lightning.errors import ConfigError

SUPPORTED_TASKS = ("multi-class", "binary-class", "ordinal-regression")


@dataclass(frozen=True)
class DatasetInfo:
    """What the rest of the package needs to know about a dataset.

    Attributes:
        flag: Dataset name, e.g. ``"breastmnist"`` or ``"digits"``.
        num_classes: Number of classes K; labels are indices in ``[0, K)``.
        in_channels: 1 (gray) or 3 (RGB).
        image_size: Side of the square images in pixels.
        task: MedMNIST task string (``ordinal-regression`` is treated as K-class classification).
        labels: Class names, index-aligned.
        n_samples: Official split sizes ``{"train": ..., "val": ..., "test": ...}``.
    """

    flag: str
    num_classes: int
    in_channels: int
    image_size: int
    task: str
    labels: tuple[str, ...]
    n_samples: dict[str, int]


DIGITS = DatasetInfo(
    flag="digits",
    num_classes=10,
    in_channels=1,
    image_size=8,
    task="multi-class",
    labels=tuple(str(i) for i in range(10)),
    n_samples={"train": 1078, "val": 180, "test": 539},
)


def medmnist_info(flag: str, size: int = 28) -> DatasetInfo:
    """Metadata of a 2D MedMNIST dataset.

    Args:
        flag: MedMNIST flag, e.g. ``"breastmnist"``.
        size: Image size of the file to use (28, 64, 128 or 224).

    Raises:
        ValueError: Unknown flag, a 3D or multi-label dataset, or an unavailable size.
    """
    usable = sorted(f for f, v in MEDMNIST_INFO.items() if v["task"] in SUPPORTED_TASKS and "3d" not in f)
    if flag not in MEDMNIST_INFO or flag not in usable:
        raise ConfigError(f"unknown or unsupported MedMNIST flag {flag!r}; expected one of {usable}")
    if size not in (28, 64, 128, 224):
        raise ConfigError(f"MedMNIST size must be one of 28, 64, 128, 224; got {size}")
    meta = MEDMNIST_INFO[flag]
    labels = tuple(meta["label"][str(i)] for i in range(len(meta["label"])))
    return DatasetInfo(
        flag=flag,
        num_classes=len(labels),
        in_channels=int(meta["n_channels"]),
        image_size=size,
        task=meta["task"],
        labels=labels,
        n_samples=dict(meta["n_samples"]),
    )
