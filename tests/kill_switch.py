"""A callback that kills its own process once, at a chosen training step (for the kill/resume tests).

The step comes from ``KR_TEST_KILL_AT_STEP``; a marker file ``KR_TEST_KILL_MARKER`` makes the kill happen only
once, so the very same command can be run again to resume. ``KR_TEST_KILL_SIGNAL`` names the signal (``SIGKILL``
unless set; ``SIGTERM`` stands for a scheduler's preemption).
"""

import os
import signal
from pathlib import Path

from lightning.pytorch.callbacks import Callback


class KillAt(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        step = int(os.environ.get("KR_TEST_KILL_AT_STEP", "-1"))
        marker = Path(os.environ.get("KR_TEST_KILL_MARKER", "/nonexistent/marker"))
        if trainer.global_step == step and not marker.exists():
            marker.write_text(str(step))
            os.kill(os.getpid(), signal.Signals[os.environ.get("KR_TEST_KILL_SIGNAL", "SIGKILL")])
