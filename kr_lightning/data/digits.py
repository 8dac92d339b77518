"""DigitsDataModule: scikit-learn's bundled handwritten digits, an offline dataset for the quickstart."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from kr_lightning.data.arrays import Split, check_split
from kr_lightning.data.base import ImageDataModule
from kr_lightning.data.info import DIGITS, DatasetInfo


class DigitsDataModule(ImageDataModule):
    """The UCI handwritten digits bundled with scikit-learn (1,797 real 8x8 gray images, 10 classes).

    No download: the data ships inside scikit-learn. Pixel values 0..16 are mapped to uint8 by ``round(v * 255 /
    16)`` and then, as for every dataset, to ``[-1, 1]``. The split is stratified and fixed by ``split_seed``
    (independent of the run's seed): 1,078 train / 180 val / 539 test images.

    Args:
        split_seed: Seed of the train / val / test partition (keep it fixed across runs and seeds).
        **kwargs: Loader and augmentation options of :class:`ImageDataModule`.
    """

    def __init__(
        self,
        split_seed: int = 0,
        **kwargs: Any,  # noqa: ANN401 - the loader / augmentation options of ImageDataModule (CLI-resolved)
    ) -> None:
        super().__init__(**kwargs)
        self.split_seed = split_seed

    @property
    def info(self) -> DatasetInfo:
        """Metadata of the digits dataset."""
        return DIGITS

    def load_splits(self) -> dict[str, Split]:
        """Stratified, seeded 1,078 / 180 / 539 split of the 1,797 images."""
        bunch = load_digits()
        images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        labels = bunch.target.astype(np.int64)
        index = np.arange(len(labels))
        sizes = DIGITS.n_samples
        train, rest = train_test_split(index, train_size=sizes["train"], stratify=labels, random_state=self.split_seed)
        val, test = train_test_split(rest, train_size=sizes["val"], stratify=labels[rest], random_state=self.split_seed)
        parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
        return {
            name: check_split(name, images[idx], labels[idx], num_classes=10, source="sklearn digits")
            for name, idx in parts.items()
        }
