"""LightningModules (systems) and their networks."""

from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.networks import ResNet18, SmallCNN
from kr_lightning.models.teacher import Teacher

__all__ = ["ClassifierModule", "ResNet18", "SmallCNN", "Teacher"]
