"""MedMNISTDataModule: the real MedMNIST 2D splits read from ``{root}/{flag}[_{size}].npz``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kr_lightning.data.arrays import Split, load_npz
from kr_lightning.data.base import ImageDataModule
from kr_lightning.data.info import DatasetInfo, medmnist_info
from kr_lightning.errors import MissingInputError

DATA_ROOT_ENV = "KR_DATA_ROOT"
DEFAULT_ROOT = "data/medmnist"


def resolve_root(root: str | None) -> Path:
    """The data folder: ``root`` if given, else ``$KR_DATA_ROOT``, else ``./data/medmnist``."""
    return Path(root or os.environ.get(DATA_ROOT_ENV) or DEFAULT_ROOT).expanduser()


def medmnist_filename(flag: str, size: int) -> str:
    """MedMNIST's file name: ``breastmnist.npz`` at 28 px, ``breastmnist_64.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


class MedMNISTDataModule(ImageDataModule):
    """A 2D MedMNIST dataset (any flag with a single-label task), real train / val / test splits.

    Images are scaled to ``[-1, 1]`` (uint8 ``v`` -> ``v / 127.5 - 1``); gray images have one channel, RGB three.
    ``retinamnist`` (ordinal) is used as 5-class classification. The file is read by kr_lightning itself
    (validated keys, shapes and labels); ``medmnist`` is only used for metadata and for ``download: true``.

    Args:
        flag: MedMNIST flag, e.g. ``breastmnist``.
        root: Folder holding ``{flag}.npz``; ``None`` uses ``$KR_DATA_ROOT``, then ``./data/medmnist``.
        size: Image size of the file (28, 64, 128 or 224).
        download: Fetch the file with ``medmnist`` when it is missing (needs network).
        **kwargs: Loader and augmentation options of :class:`ImageDataModule`.
    """

    def __init__(
        self,
        flag: str = "breastmnist",
        root: str | None = None,
        size: int = 28,
        download: bool = False,
        **kwargs: Any,  # noqa: ANN401 - the loader / augmentation options of ImageDataModule (CLI-resolved)
    ) -> None:
        super().__init__(**kwargs)
        self._info = medmnist_info(flag, size)
        self.flag = flag
        self.root = root
        self.size = size
        self.download = download

    @property
    def info(self) -> DatasetInfo:
        """Metadata from ``medmnist.INFO``."""
        return self._info

    @property
    def path(self) -> Path:
        """Where the npz file is expected."""
        return resolve_root(self.root) / medmnist_filename(self.flag, self.size)

    def load_splits(self) -> dict[str, Split]:
        """Read the npz, downloading it first when allowed and missing."""
        path = self.path
        if not path.is_file():
            if not self.download:
                raise MissingInputError(self._missing_message(path, reason="the file does not exist"))
            self._download(path)
        return load_npz(path, num_classes=self.num_classes)

    def _download(self, path: Path) -> None:
        import medmnist

        path.parent.mkdir(parents=True, exist_ok=True)
        dataset_class = getattr(medmnist, medmnist.INFO[self.flag]["python_class"])
        try:
            dataset_class(split="train", root=str(path.parent), size=self.size, download=True)
        except Exception as err:  # medmnist wraps every network failure in a bare RuntimeError
            raise MissingInputError(self._missing_message(path, reason=f"the download failed ({err})")) from err
        if not path.is_file():
            raise MissingInputError(self._missing_message(path, reason="the download finished without the file"))

    def _missing_message(self, path: Path, *, reason: str) -> str:
        return (
            f"MedMNIST file {path.name!r} not found in {path.parent.resolve()} ({reason}).\n"
            f"Provide it in one of two ways:\n"
            f"  1. copy {path.name} (the official MedMNIST npz, Zenodo record 10519652) into that folder, or point "
            f"the data module at the folder that holds it: --data.root=/path/to/folder "
            f"or export {DATA_ROOT_ENV}=/path/to/folder;\n"
            f"  2. on a machine with network access, add --data.download=true to fetch it with medmnist."
        )
