"""kr_lightning: Knowledge Recycling with Generative Knowledge Distillation on PyTorch Lightning."""

__version__ = "0.1.0"
