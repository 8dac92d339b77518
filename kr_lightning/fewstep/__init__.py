"""Few-step generators: a guided multi-step sampler distilled into an unguided DDIM sampler with fewer steps."""

from kr_lightning.fewstep.module import FewStepGenerator
from kr_lightning.fewstep.trajectories import TrajectoryDataModule

__all__ = ["FewStepGenerator", "TrajectoryDataModule"]
