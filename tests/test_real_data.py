"""One test on the real BreastMNIST file; under CI=true a missing file is a failure, not a skip."""

import os

import numpy as np
import pytest

from conftest import real_data_root
from kr_lightning.data import MedMNISTDataModule


def test_real_breastmnist_from_data_root():
    root = real_data_root()
    if root is None:
        message = "breastmnist.npz not found in $KR_DATA_ROOT or ../shared/data"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    dm = MedMNISTDataModule(flag="breastmnist", root=str(root))
    sizes = {s: len(dm.split(s)) for s in ("train", "val", "test")}
    assert sizes == {"train": 546, "val": 78, "test": 156}
    assert np.bincount(dm.split("train").labels).tolist() == [147, 399]
    x, y = next(iter(dm.test_dataloader()))
    assert x.shape == (156, 1, 28, 28) and -1 <= x.min() < x.max() <= 1
