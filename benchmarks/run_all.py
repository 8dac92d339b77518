"""Run every benchmark (JSON lines on stdout). Needs the BreastMNIST generator, seed-0 teacher and select runs."""

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
GENERATOR = "runs/breastmnist/seed0/generator/export"
TEACHER = "runs/breastmnist/seed0/teacher/checkpoints/best.ckpt"
SELECTION = "runs/breastmnist/select/selection.json"
COMMANDS = [
    [str(HERE / "sampling.py"), "--generator", GENERATOR, "--n", "64", "--batch", "32", "--steps", "20"],
    [str(HERE / "generation_knobs.py"), "--generator", GENERATOR, "--n", "256", "--rounds", "3"],
    [str(HERE / "gkd_epoch.py"), f"--data.teacher_ckpt={TEACHER}"],
    [str(HERE / "memory.py")],
]

if __name__ == "__main__":
    missing = [path for path in (GENERATOR, TEACHER, SELECTION) if not Path(path).exists()]
    if missing:
        sys.exit(
            f"benchmarks need {', '.join(missing)}; create them with "
            "`make reproduce-medmnist PROFILE=cpu DATASETS=breastmnist SEEDS=0` (the generator, teacher and select "
            "stages are enough), then rerun `make bench`."
        )
    for command in COMMANDS:
        subprocess.run([sys.executable, *command], check=True)
