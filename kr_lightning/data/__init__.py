"""Real-image data: one DataModule for every registered dataset, and the dataset registry."""

from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.data.registry import DATASETS, dataset_info

__all__ = ["DATASETS", "ImageDataModule", "dataset_info"]
