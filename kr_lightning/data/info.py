"""Dataset metadata: one typed record per dataset (MedMNIST's ``INFO``, the embedded digits, torchvision's sets).

Pure data, no I/O. Besides sizes and class names each record says which flips preserve its labels: a data fragment
(``experiments/data/<flag>.yaml``) may only switch on those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from medmnist.info import INFO as MEDMNIST_INFO

from kr_lightning.errors import ConfigError

SUPPORTED_TASKS = ("multi-class", "binary-class", "ordinal-regression")
Source = Literal["embedded", "medmnist", "torchvision"]
Flip = Literal["hflip", "vflip"]

# Flips that keep an image's class, per MedMNIST flag. Orientation-free microscopy and dermoscopy allow both;
# ultrasound, X-ray, OCT and fundus images only the left/right mirror; the organ CT sets none (their classes
# include left and right organs).
MEDMNIST_FLIPS: dict[str, tuple[Flip, ...]] = {
    "pathmnist": ("hflip", "vflip"),
    "dermamnist": ("hflip", "vflip"),
    "octmnist": ("hflip",),
    "pneumoniamnist": ("hflip",),
    "retinamnist": ("hflip",),
    "breastmnist": ("hflip",),
    "bloodmnist": ("hflip", "vflip"),
    "tissuemnist": ("hflip", "vflip"),
    "organamnist": (),
    "organcmnist": (),
    "organsmnist": (),
}


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
        n_samples: Split sizes ``{"train": ..., "val": ..., "test": ...}``.
        source: Where the images come from: ``embedded`` (scikit-learn), ``medmnist`` (npz files) or
            ``torchvision`` (its dataset classes).
        flips: The flips that preserve the labels.
    """

    flag: str
    num_classes: int
    in_channels: int
    image_size: int
    task: str
    labels: tuple[str, ...]
    n_samples: dict[str, int]
    source: Source = "medmnist"
    flips: tuple[Flip, ...] = ()


DIGITS = DatasetInfo(
    flag="digits",
    num_classes=10,
    in_channels=1,
    image_size=8,
    task="multi-class",
    labels=tuple(str(i) for i in range(10)),
    n_samples={"train": 1078, "val": 180, "test": 539},
    source="embedded",
    flips=(),  # a mirrored 2, 3 or 7 is not that digit
)


def medmnist_info(flag: str, size: int = 28) -> DatasetInfo:
    """Metadata of a 2D single-label MedMNIST dataset.

    Args:
        flag: MedMNIST flag, e.g. ``"breastmnist"``.
        size: Image size of the file to use (28, 64, 128 or 224).

    Raises:
        ConfigError: Unknown flag, a 3D or multi-label dataset, or an unavailable size.
    """
    if flag not in MEDMNIST_FLIPS:
        raise ConfigError(f"unknown or unsupported MedMNIST flag {flag!r}; expected one of {sorted(MEDMNIST_FLIPS)}")
    if size not in (28, 64, 128, 224):
        raise ConfigError(f"MedMNIST size must be one of 28, 64, 128, 224; got {size}")
    meta = MEDMNIST_INFO[flag]
    if meta["task"] not in SUPPORTED_TASKS:
        raise ConfigError(f"{flag} is a {meta['task']} dataset; kr_lightning supports {SUPPORTED_TASKS}")
    labels = tuple(meta["label"][str(i)] for i in range(len(meta["label"])))
    return DatasetInfo(
        flag=flag,
        num_classes=len(labels),
        in_channels=int(meta["n_channels"]),
        image_size=size,
        task=meta["task"],
        labels=labels,
        n_samples=dict(meta["n_samples"]),
        source="medmnist",
        flips=MEDMNIST_FLIPS[flag],
    )
