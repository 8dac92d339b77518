"""Generative knowledge distillation: synthetic training data regenerated and labelled by a teacher."""

from kr_lightning.distill.datamodule import GKDDataModule

__all__ = ["GKDDataModule"]
