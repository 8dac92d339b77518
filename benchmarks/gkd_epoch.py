"""Cost of one GKD epoch on BreastMNIST, split into generation, labelling and training, vs a real-data epoch.

Prints one JSON line per synthetic-set size (``--multipliers``): ``gen_s`` (a set after the first, i.e. without a
compile warm-up; ``gen_first_set_s`` is the first), ``label_s``, ``train_s``, their sum ``epoch_s``,
``real_epoch_s`` (the teacher recipe on the real train split, one epoch) and ``ratio_to_real_epoch`` (GKD epoch /
real epoch of the same size, i.e. the real epoch scaled by the multiplier).

    python benchmarks/gkd_epoch.py --multipliers 0.5 1 2
    python benchmarks/gkd_epoch.py --multipliers 1 \
        --data.teacher_ckpt=runs/breastmnist/seed0/teacher/checkpoints/best.ckpt \
        --data.steps=50 --data.sampler=ddim      # any further argument overrides the student config
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from kr_lightning.distill.synthesis import teacher_logits
from kr_lightning.privacy.references import build


def timed(fn):
    """Seconds of ``fn()`` (GPU work included: queued kernels are waited for) and its result."""
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="experiments/breastmnist/student.yaml")
    parser.add_argument("--teacher", default="experiments/breastmnist/teacher.yaml")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    args, extra = parser.parse_known_args()  # anything else is a student override, e.g. --data.steps=50
    quiet = ["--trainer.max_epochs=1", "--trainer.limit_val_batches=0"]
    with tempfile.TemporaryDirectory() as tmp:
        real = build(Path(args.teacher), Path(tmp) / "teacher", 0, quiet)
        real_s, _ = timed(lambda: real.trainer.fit(real.model, datamodule=real.datamodule))
        n_real = len(real.datamodule.split("train"))
        for multiplier in args.multipliers:
            cache = Path(tmp) / f"cache{multiplier}"
            overrides = [
                *quiet,
                f"--data.multiplier={multiplier}",
                "--data.regenerate_every=0",
                f"--data.cache_dir={cache}",
                *extra,
            ]
            cli = build(Path(args.student), Path(tmp) / f"student{multiplier}", 0, overrides)
            data = cli.datamodule
            data.setup("fit")
            first_s, _ = timed(lambda d=data: d.images(0, 0, 1))  # set 0, cached; includes any compile warm-up
            gen_s, x = timed(lambda d=data: d.images(1, 0, 1))  # set 1: the steady cost of every later set
            label_s, _ = timed(lambda d=data, x=x: teacher_logits(d.teacher, x))
            train_s, _ = timed(lambda c=cli: c.trainer.fit(c.model, datamodule=c.datamodule))  # reads the cache
            epoch_s = gen_s + label_s + train_s
            print(
                json.dumps(
                    {
                        "benchmark": "gkd_epoch",
                        "multiplier": multiplier,
                        "n_synthetic": len(x),
                        "knobs": data.knobs,
                        "speedups": data.speedups,
                        "gen_first_set_s": round(first_s, 2),
                        "gen_s": round(gen_s, 2),
                        "label_s": round(label_s, 3),
                        "train_s": round(train_s, 2),
                        "epoch_s": round(epoch_s, 2),
                        "gen_share": round(gen_s / epoch_s, 3),
                        "real_epoch_s": round(real_s * len(x) / n_real, 2),
                        "ratio_to_real_epoch": round(epoch_s / (real_s * len(x) / n_real), 2),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
