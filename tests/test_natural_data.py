"""The torchvision datasets, read from tiny files written in torchvision's exact on-disk format.

Fashion-MNIST: big-endian idx files in ``FashionMNIST/raw`` (unpacked, as torchvision's ``_check_exists`` wants).
CIFAR: latin-1-readable pickles of ``{"data": uint8 (N, 3072) CHW rows, "labels"/"fine_labels": [...]}`` plus
the meta file; torchvision's class-level MD5 lists are monkeypatched to the tiny files' checksums, so its own
integrity check runs unchanged. The network is never touched: ``urllib.request.urlopen`` raises as offline.
"""

import hashlib
import pickle
import struct
import urllib.request
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torchvision.datasets as tvd

from kr_lightning.data.natural import NATURAL_INFO, load_natural
from kr_lightning.errors import ConfigError, MissingInputError

FLAGS = ("fashionmnist", "cifar10", "cifar100")
PER_CLASS = {"fashionmnist": 5, "cifar10": 5, "cifar100": 2}  # official-train images per class
N_TEST = {"fashionmnist": 20, "cifar10": 20, "cifar100": 30}
EXPECTS = {"fashionmnist": "FashionMNIST/raw/", "cifar10": "cifar-10-batches-py/", "cifar100": "cifar-100-python/"}


def val_fraction(flag: str) -> float:
    """Holds out exactly one image per class."""
    return 1 / PER_CLASS[flag]


def tiny_split(flag: str, n: int, rng: np.random.Generator, *, every_class: bool):
    info = NATURAL_INFO[flag]
    k, size = info.num_classes, info.image_size
    labels = np.repeat(np.arange(k), n // k) if every_class else rng.integers(0, k, n)
    rng.shuffle(labels)
    shape = (n, size, size) if info.in_channels == 1 else (n, size, size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8), labels.astype(np.int64)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_pickle(path: Path, obj: dict) -> str:
    path.write_bytes(pickle.dumps(obj, protocol=2))
    return hashlib.md5(path.read_bytes()).hexdigest()


def cifar_batch(images: np.ndarray, labels: np.ndarray, label_key: str) -> dict:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), 3 * 32 * 32)  # official rows: R plane, G, B
    return {"batch_label": "tiny", label_key: labels.tolist(), "data": rows, "filenames": [""] * len(labels)}


def write_natural(root: Path, flag: str, monkeypatch: pytest.MonkeyPatch, seed: int = 0) -> dict:
    """Write tiny official-format files for ``flag`` under ``root``; returns the written arrays per split."""
    rng = np.random.default_rng(seed)
    info = NATURAL_INFO[flag]
    written = {
        "train": tiny_split(flag, PER_CLASS[flag] * info.num_classes, rng, every_class=True),
        "test": tiny_split(flag, N_TEST[flag], rng, every_class=False),
    }
    if flag == "fashionmnist":
        raw = root / "FashionMNIST" / "raw"
        raw.mkdir(parents=True)
        for split, prefix in (("train", "train"), ("test", "t10k")):
            write_idx(raw / f"{prefix}-images-idx3-ubyte", written[split][0])
            write_idx(raw / f"{prefix}-labels-idx1-ubyte", written[split][1])
        return written
    cls = tvd.CIFAR10 if flag == "cifar10" else tvd.CIFAR100
    folder = root / cls.base_folder
    folder.mkdir(parents=True)
    label_key = "labels" if flag == "cifar10" else "fine_labels"
    train_names = [name for name, _ in cls.train_list]
    chunks = np.array_split(np.arange(len(written["train"][1])), len(train_names))
    train_list = [
        [name, write_pickle(folder / name, cifar_batch(*(a[idx] for a in written["train"]), label_key))]
        for name, idx in zip(train_names, chunks, strict=True)
    ]
    test_name = cls.test_list[0][0]
    test_list = [[test_name, write_pickle(folder / test_name, cifar_batch(*written["test"], label_key))]]
    meta = {cls.meta["key"]: list(info.labels)}
    if flag == "cifar100":
        meta["coarse_label_names"] = [f"superclass_{i}" for i in range(20)]
    meta_md5 = write_pickle(folder / cls.meta["filename"], meta)
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", test_list)
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": meta_md5})
    return written


@pytest.fixture
def offline(monkeypatch):
    """Every torchvision download fails the way it does without network."""

    def no_network(*args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)


def rows(images: np.ndarray) -> list[bytes]:
    return [image.tobytes() for image in images]


@pytest.mark.parametrize("flag", FLAGS)
def test_splits_have_the_dataset_layout(flag, tmp_path, monkeypatch):
    write_natural(tmp_path, flag, monkeypatch)
    splits = load_natural(flag, tmp_path, download=False, val_fraction=val_fraction(flag))
    info = NATURAL_INFO[flag]
    k, size = info.num_classes, info.image_size
    pixel_shape = (size, size) if info.in_channels == 1 else (size, size, 3)
    sizes = {"train": (PER_CLASS[flag] - 1) * k, "val": k, "test": N_TEST[flag]}
    for name, split in splits.items():
        assert split.images.dtype == np.uint8 and split.images.shape == (sizes[name], *pixel_shape)
        assert split.labels.dtype == np.int64 and split.labels.shape == (sizes[name],)


@pytest.mark.parametrize("flag", FLAGS)
def test_val_is_stratified_disjoint_and_fixed_by_split_seed(flag, tmp_path, monkeypatch):
    written = write_natural(tmp_path, flag, monkeypatch)
    k = NATURAL_INFO[flag].num_classes
    first = load_natural(flag, tmp_path, download=False, val_fraction=val_fraction(flag))
    train, val = first["train"], first["val"]
    assert (np.bincount(val.labels, minlength=k) == 1).all()
    assert (np.bincount(train.labels, minlength=k) == PER_CLASS[flag] - 1).all()
    assert not set(rows(train.images)) & set(rows(val.images))
    assert set(rows(train.images)) | set(rows(val.images)) == set(rows(written["train"][0]))

    again = load_natural(flag, tmp_path, download=False, val_fraction=val_fraction(flag))
    other = load_natural(flag, tmp_path, download=False, val_fraction=val_fraction(flag), split_seed=1)
    for name in ("train", "val"):
        np.testing.assert_array_equal(again[name].images, first[name].images)
        np.testing.assert_array_equal(again[name].labels, first[name].labels)
    assert set(rows(other["val"].images)) != set(rows(val.images))


@pytest.mark.parametrize("flag", FLAGS)
def test_pixels_and_labels_round_trip(flag, tmp_path, monkeypatch):
    written = write_natural(tmp_path, flag, monkeypatch)
    splits = load_natural(flag, tmp_path, download=False, val_fraction=val_fraction(flag))
    np.testing.assert_array_equal(splits["test"].images, written["test"][0])
    np.testing.assert_array_equal(splits["test"].labels, written["test"][1])
    position = {row: i for i, row in enumerate(rows(written["train"][0]))}
    for name in ("train", "val"):
        index = np.array([position[row] for row in rows(splits[name].images)])
        assert (np.diff(index) > 0).all()  # the official order is kept
        np.testing.assert_array_equal(splits[name].images, written["train"][0][index])
        np.testing.assert_array_equal(splits[name].labels, written["train"][1][index])


def assert_says_what_to_do(message: str, flag: str, root: Path) -> None:
    for needle in (flag, str(root.resolve()), EXPECTS[flag], "--data.root=", "KR_DATA_ROOT", "--data.download=true"):
        assert needle in message


@pytest.mark.parametrize("flag", FLAGS)
def test_missing_files_and_failed_download_give_one_clear_message(flag, tmp_path, offline):
    with pytest.raises(MissingInputError) as missing:
        load_natural(flag, tmp_path / "empty", download=False)
    with pytest.raises(MissingInputError) as failed:
        load_natural(flag, tmp_path / "empty", download=True)
    assert_says_what_to_do(str(missing.value), flag, tmp_path / "empty")
    assert_says_what_to_do(str(failed.value), flag, tmp_path / "empty")
    assert "download failed" in str(failed.value) and "name resolution" in str(failed.value)
    assert str(missing.value).splitlines()[1:] == str(failed.value).splitlines()[1:]  # only the reason differs
    assert len(str(failed.value).splitlines()) == 4


@pytest.mark.parametrize("flag", ("fashionmnist", "cifar10"))
def test_download_true_keeps_present_files_offline(flag, tmp_path, monkeypatch, offline):
    written = write_natural(tmp_path, flag, monkeypatch)
    splits = load_natural(flag, tmp_path, download=True, val_fraction=val_fraction(flag))
    np.testing.assert_array_equal(splits["test"].labels, written["test"][1])


def test_corrupted_cifar_file_is_reported_as_missing(tmp_path, monkeypatch):
    write_natural(tmp_path, "cifar10", monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"truncated")
    with pytest.raises(MissingInputError, match="not found or corrupted"):
        load_natural("cifar10", tmp_path, download=False)


def test_bad_flag_or_val_fraction_is_a_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'cifar1000'.*cifar100"):
        load_natural("cifar1000", tmp_path, download=False)
    with pytest.raises(ConfigError, match="val_fraction"):
        load_natural("cifar10", tmp_path, download=False, val_fraction=1.0)
    write_natural(tmp_path, "cifar10", monkeypatch)
    with pytest.raises(ConfigError, match="one per class"):
        load_natural("cifar10", tmp_path, download=False, val_fraction=0.1)  # 5 val images for 10 classes


def test_metadata_table_matches_the_official_datasets():
    expected = {"fashionmnist": (10, 1, 28, 60_000), "cifar10": (10, 3, 32, 50_000), "cifar100": (100, 3, 32, 50_000)}
    for flag, (k, channels, size, n_train) in expected.items():
        info = NATURAL_INFO[flag]
        assert (info.flag, info.num_classes, info.in_channels, info.image_size) == (flag, k, channels, size)
        assert info.task == "multi-class" and len(set(info.labels)) == k
        assert info.n_samples == {"train": n_train * 9 // 10, "val": n_train // 10, "test": 10_000}
    assert list(NATURAL_INFO["fashionmnist"].labels) == tvd.FashionMNIST.classes
    assert list(NATURAL_INFO["cifar100"].labels) == sorted(NATURAL_INFO["cifar100"].labels)  # official order is A-Z
