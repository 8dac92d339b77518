"""Real-image DataModules and dataset metadata."""

from kr_lightning.data.base import ImageDataModule
from kr_lightning.data.digits import DigitsDataModule
from kr_lightning.data.medmnist import MedMNISTDataModule

__all__ = ["DigitsDataModule", "ImageDataModule", "MedMNISTDataModule"]
