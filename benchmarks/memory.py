"""Peak memory of each stage, one short run per stage in its own process.

Prints one JSON line per stage with ``peak_rss_mb`` (``ru_maxrss`` of the process that ran it) and, where the stage
ran on a GPU, ``peak_cuda_mb`` (``torch.cuda.max_memory_allocated``).

    python benchmarks/memory.py
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile

STAGES = {
    "generator (fit, 1 epoch)": [
        "fit",
        "--config",
        "experiments/recipes/cpu/generator.yaml",
        "--config",
        "experiments/data/breastmnist.yaml",
        "--trainer.default_root_dir=runs/bench/memory/generator",
        "--trainer.max_epochs=1",
        "--trainer.callbacks=[]",
        "--trainer.enable_checkpointing=false",
    ],
    "teacher (fit, 2 epochs)": [
        "fit",
        "--config",
        "experiments/recipes/cpu/teacher.yaml",
        "--config",
        "experiments/data/breastmnist.yaml",
        "--trainer.default_root_dir=runs/bench/memory/teacher",
        "--trainer.max_epochs=2",
    ],
    "GKD student (fit, 1 epoch, one 546-image set generated and labelled)": [
        "fit",
        "--config",
        "experiments/recipes/cpu/student.yaml",
        "--config",
        "experiments/data/breastmnist.yaml",
        "--trainer.default_root_dir=runs/bench/memory/student",
        "--trainer.max_epochs=1",
        "--data.cache_dir=null",
    ],
    "sample (546 images)": [
        "sample",
        "--generator=runs/breastmnist/seed0/generator/export",
        "--per_class=273",
        "--sampler=dpmsolver++",
        "--steps=10",
        "--device=auto",
    ],
}


def child(argv: list[str]) -> None:
    from kr_lightning.cli import main

    main(argv)
    print("PEAK_RSS_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    import torch

    if torch.cuda.is_available() and torch.cuda.max_memory_allocated():
        print("PEAK_CUDA_BYTES", torch.cuda.max_memory_allocated())


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in STAGES.items():
            argv = list(argv)
            if argv[0] == "fit":
                argv.append(f"--trainer.default_root_dir={tmp}/{len(name)}")
            else:
                argv.append(f"--out={tmp}/sample.npz")
            done = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True)
            peak = [line for line in done.stdout.splitlines() if line.startswith("PEAK_RSS_KB")]
            cuda = [line for line in done.stdout.splitlines() if line.startswith("PEAK_CUDA_BYTES")]
            print(
                json.dumps(
                    {
                        "benchmark": "memory",
                        "stage": name,
                        "returncode": done.returncode,
                        "peak_rss_mb": round(int(peak[-1].split()[1]) / 1024, 1) if peak else None,
                        "peak_cuda_mb": round(int(cuda[-1].split()[1]) / 2**20, 1) if cuda else None,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
