"""Errors a user can fix.

The CLI prints their message (what was expected, what was found, what to do) and exits with status 2 instead of
showing a traceback; each also subclasses the matching built-in exception.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


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


class SigtermInterrupts:
    """While active, SIGTERM raises :class:`Terminated` at once, as Ctrl-C raises ``KeyboardInterrupt``.

    Inside a Lightning fit, Lightning calls this handler after its own, so a stage stops at once (a rerun resumes
    from ``last.ckpt``, or from the last finished unit of ``select`` / ``mia``) instead of finishing the epoch and
    exiting with status 0 as if it were done; Lightning turns the interrupt into ``sys.exit(1)`` on the way out, so
    ``received`` tells the CLI which exits the signal caused. Only the main thread can set handlers; elsewhere
    (a test runner's worker thread) this does nothing.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: Any = None

    def __enter__(self) -> SigtermInterrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._interrupt)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _interrupt(self, signum: int, _frame: object) -> None:
        self.received = signum
        raise Terminated(signum)
