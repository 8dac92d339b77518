"""MedMNIST's 2D files: ``{root}/{flag}[_{size}].npz``, read and validated by kr_lightning, downloaded by medmnist."""

from __future__ import annotations

from pathlib import Path

from kr_lightning.data.arrays import Split, load_npz
from kr_lightning.data.info import DatasetInfo
from kr_lightning.errors import MissingInputError

DATA_ROOT_ENV = "KR_DATA_ROOT"


def medmnist_filename(flag: str, size: int) -> str:
    """MedMNIST's file name: ``breastmnist.npz`` at 28 px, ``breastmnist_64.npz`` otherwise."""
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def load_medmnist(info: DatasetInfo, folder: Path, *, download: bool) -> dict[str, Split]:
    """The three splits of ``info``'s npz in ``folder``, downloaded first when allowed and missing.

    Only metadata and the download come from ``medmnist``: the file itself is read here (validated keys, shapes
    and labels), because ``medmnist``'s classes assert the official sizes and create ``~/.medmnist`` on import.
    """
    path = folder / medmnist_filename(info.flag, info.image_size)
    if not path.is_file():
        if not download:
            raise MissingInputError(missing_message(path, reason="the file does not exist"))
        _download(info, path)
    return load_npz(path, num_classes=info.num_classes)


def _download(info: DatasetInfo, path: Path) -> None:
    import medmnist

    path.parent.mkdir(parents=True, exist_ok=True)
    dataset_class = getattr(medmnist, medmnist.INFO[info.flag]["python_class"])
    size = info.image_size
    try:
        dataset_class(split="train", root=str(path.parent), size=size, download=True)
    except Exception as err:  # medmnist wraps every network failure in a bare RuntimeError
        raise MissingInputError(missing_message(path, reason=f"the download failed ({err})")) from err
    if not path.is_file():
        raise MissingInputError(missing_message(path, reason="the download finished without the file"))


def missing_message(path: Path, *, reason: str) -> str:
    """What to do when a MedMNIST file is missing."""
    return (
        f"MedMNIST file {path.name!r} not found in {path.parent.resolve()} ({reason}).\n"
        f"Provide it in one of two ways:\n"
        f"  1. copy {path.name} (the official MedMNIST npz, Zenodo record 10519652) into that folder, or point "
        f"the data module at the folder that holds it: --data.root=/path/to/folder "
        f"or export {DATA_ROOT_ENV}=/path/to/folder;\n"
        f"  2. on a machine with network access, add --data.download=true to fetch it with medmnist."
    )
