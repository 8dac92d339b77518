"""RunRecord: save the full config and a record of the code and packages that produced a run."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import SaveConfigCallback

from kr_lightning import artifacts
from kr_lightning.runs import run_dir

PACKAGES = ("kr_lightning", "torch", "lightning", "diffusers", "torchmetrics", "jsonargparse", "medmnist", "numpy")


def git_sha(folder: Path) -> str | None:
    """The commit checked out in ``folder`` (with ``+dirty`` when there are uncommitted changes), if any."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=folder, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide the numbers."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


class RunRecord(SaveConfigCallback):
    """Writes ``config.yaml`` (LightningCLI's full config) and ``run.json`` into the run folder (rank 0)."""

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Write ``run.json`` next to ``config.yaml`` (``started``: this process's start).

        A resumed run also records ``sessions`` and ``earlier_seconds``: the active time of the interrupted
        sessions, each counted from its start to its last checkpoint (later work was lost and is redone), so that
        ``wall_seconds`` at the end is the compute the run took, not the time the folder existed.
        """
        folder = run_dir(trainer)
        resumed_from = self.config.get("ckpt_path")
        record = {
            "stage": stage,
            "command": [Path(sys.executable).name, "-m", "kr_lightning", *sys.argv[1:]],
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git": git_sha(Path(__file__).resolve().parent),
            "python": platform.python_version(),
            "packages": package_versions(),
            "seed": self.config.get("seed_everything"),
            "dataset": getattr(trainer.datamodule, "flag", None),
            "resumed_from": resumed_from,
        }
        if resumed_from and stage == "fit":
            record |= earlier_sessions(folder / "run.json", Path(resumed_from))
        artifacts.write_json(folder / "run.json", record)


def earlier_sessions(run_json: Path, checkpoint: Path) -> dict[str, float | int]:
    """Sessions and active seconds before this one, from the previous ``run.json`` and the checkpoint's time."""
    try:
        previous = json.loads(run_json.read_text())
        started = datetime.fromisoformat(previous["started"]).timestamp()
        active = max(0.0, checkpoint.stat().st_mtime - started)
    except (OSError, KeyError, ValueError):
        return {}
    return {
        "sessions": int(previous.get("sessions", 1)) + 1,
        "earlier_seconds": round(float(previous.get("earlier_seconds", 0.0)) + active, 1),
    }
