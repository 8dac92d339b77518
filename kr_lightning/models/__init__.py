"""LightningModules (systems) and their networks."""

from kr_lightning.models.classifier import ClassifierModule
from kr_lightning.models.dp_teacher import DPTeacher
from kr_lightning.models.generator import DiffusionGenerator
from kr_lightning.models.generator_pipeline import ClassConditionalPipeline
from kr_lightning.models.networks import ResNet18, SmallCNN
from kr_lightning.models.student import Student
from kr_lightning.models.teacher import Teacher

__all__ = [
    "ClassConditionalPipeline",
    "ClassifierModule",
    "DPTeacher",
    "DiffusionGenerator",
    "ResNet18",
    "SmallCNN",
    "Student",
    "Teacher",
]
