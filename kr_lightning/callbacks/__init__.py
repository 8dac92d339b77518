"""Lightning callbacks of kr_lightning."""

from kr_lightning.callbacks.best_metric import BestMetric
from kr_lightning.callbacks.last_checkpoint import LastCheckpoint
from kr_lightning.callbacks.sample_grid import SampleGrid
from kr_lightning.callbacks.tie_break import TieBreak
from kr_lightning.callbacks.val_predictions import ValPredictions

__all__ = ["BestMetric", "LastCheckpoint", "SampleGrid", "TieBreak", "ValPredictions"]
