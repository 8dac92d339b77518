"""Lightning callbacks of kr_lightning."""

from kr_lightning.callbacks.best_metric import BestMetric
from kr_lightning.callbacks.last_checkpoint import LastCheckpoint
from kr_lightning.callbacks.sample_grid import SampleGrid

__all__ = ["BestMetric", "LastCheckpoint", "SampleGrid"]
