"""scikit-learn's bundled handwritten digits, an offline dataset for the quickstart."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from kr_lightning.data.arrays import Split, check_split
from kr_lightning.data.info import DIGITS


def load_digits_splits(split_seed: int) -> dict[str, Split]:
    """The UCI handwritten digits (1,797 real 8x8 gray images, 10 classes), split 1,078 / 180 / 539.

    No download: the data ships inside scikit-learn. Pixel values 0..16 are mapped to uint8 by
    ``round(v * 255 / 16)``. The split is stratified and fixed by ``split_seed`` (independent of the run's seed).
    """
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    index = np.arange(len(labels))
    sizes = DIGITS.n_samples
    train, rest = train_test_split(index, train_size=sizes["train"], stratify=labels, random_state=split_seed)
    val, test = train_test_split(rest, train_size=sizes["val"], stratify=labels[rest], random_state=split_seed)
    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}
    return {
        name: check_split(name, images[idx], labels[idx], num_classes=10, source="sklearn digits")
        for name, idx in parts.items()
    }
