"""Errors a user can fix.

The CLI prints their message (what was expected, what was found, what to do) and exits with status 2 instead of
showing a traceback; each also subclasses the matching built-in exception.
"""


class KRError(Exception):
    """Base class of the errors kr_lightning reports to users."""


class ConfigError(KRError, ValueError):
    """A configuration value is invalid or inconsistent."""


class DataError(KRError, ValueError):
    """A data file is unreadable or has the wrong layout, shapes or labels."""


class MissingInputError(KRError, FileNotFoundError):
    """A file or folder the stage needs does not exist."""


class CheckpointError(KRError, ValueError):
    """A checkpoint or export is unreadable, of the wrong stage, or does not fit the data."""


class RunExistsError(KRError, FileExistsError):
    """The output already holds a finished result."""


class DivergedError(KRError, FloatingPointError):
    """Training produced a non-finite loss."""


class TrainingError(KRError, RuntimeError):
    """A model could not be trained to the required quality."""


class Terminated(KeyboardInterrupt):
    """A stop signal other than Ctrl-C (``kill``, a scheduler's preemption) arrived; handled like Ctrl-C.

    Args:
        signum: The signal's number; the CLI exits with ``128 + signum`` as a shell does.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum
