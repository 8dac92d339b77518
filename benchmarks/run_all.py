"""Run every benchmark (JSON lines on stdout). Needs the BreastMNIST generator and teacher runs (see README)."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
COMMANDS = [
    [str(HERE / "sampling.py"), "--generator", "runs/breastmnist/generator/export", "--n", "64", "--steps", "20"],
    [str(HERE / "gkd_epoch.py")],
    [str(HERE / "memory.py")],
]

if __name__ == "__main__":
    for command in COMMANDS:
        subprocess.run([sys.executable, *command], check=True)
