"""A CSV logger that appends to an existing ``metrics.csv`` instead of deleting it, so resumed runs keep history."""

from __future__ import annotations

import csv

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, minus the deletion of an existing metrics file at start."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                header = next(csv.reader(file), [])
            self.metrics_keys = sorted(header)


class ResumableCSVLogger(CSVLogger):
    """:class:`~lightning.pytorch.loggers.CSVLogger` whose ``metrics.csv`` survives a resume from ``last.ckpt``.

    Rows logged before the interruption are kept and the resumed run appends below them (the ``epoch`` and
    ``step`` columns tell them apart).
    """

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        """The appending writer (created on first use, rank 0 only)."""
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return self._experiment
