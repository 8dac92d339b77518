"""The run-root helpers ``report`` and ``records`` share: seed order and which folders are datasets."""

from pathlib import Path

from kr_lightning.layout import dataset_names, seed_folders


def test_seed_folders_sort_by_number_not_text(tmp_path: Path) -> None:
    for name in ("seed10", "seed2", "seed0", "seed1"):
        (tmp_path / name).mkdir()
    assert [p.name for p in seed_folders(tmp_path)] == ["seed0", "seed1", "seed2", "seed10"]


def test_dataset_names_leave_out_files_and_hidden_copies(tmp_path: Path) -> None:
    for name in ("pneumoniamnist", "breastmnist", ".breastmnist.partial"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a dataset")
    assert dataset_names(tmp_path) == ["breastmnist", "pneumoniamnist"]
    assert dataset_names(tmp_path / "missing") == []
