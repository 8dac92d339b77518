"""Where a generator fit's time goes: optimiser steps vs the gaps between them, within and between epochs.

Fits the recipe's generator for ``--steps`` optimiser steps (the recipe's network, precision, batch size, EMA, logger
and progress bar; no grids or checkpoints) and prints one JSON line per variant: the median optimiser step
(``step_s``, batch start to end, GPU work waited for), the median gap between two steps of one epoch
(``gap_in_epoch_s``) and between the last step of an epoch and the first of the next (``epoch_boundary_s``, which
holds validation every ``check_val_every_n_epoch`` epochs), the steps per second over the timed steps, and the
recipe's ``max_steps`` projected at that rate, and the size and write time of one checkpoint of the fit (what a
``last.ckpt`` costs). Small data sets have few steps per epoch (BreastMNIST at batch 256:
3), so the boundary can cost more than the steps. Variants: ``recipe``; ``tf32`` (float32 matmuls on TF32,
``torch.set_float32_matmul_precision("high")``); ``cudnn_benchmark`` (``trainer.benchmark=True``); ``no_val``.

    python benchmarks/generator_step.py --recipe experiments/recipes/gpu/generator.yaml --steps 60
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import yaml

from kr_lightning.stages import build_stage

VARIANTS = {
    "recipe": {},
    "tf32": {},
    "cudnn_benchmark": {"trainer": {"benchmark": True}},
    "no_val": {"trainer": {"limit_val_batches": 0}},
}


class Clock(L.Callback):
    """Timestamps at each optimiser step's start and end (after the GPU has finished it)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, float]] = []

    def stamp(self, kind: str, epoch: int) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.events.append((kind, epoch, time.perf_counter()))

    def on_train_batch_start(self, trainer: L.Trainer, *args: object) -> None:
        self.stamp("start", trainer.current_epoch)

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        self.stamp("end", trainer.current_epoch)


def summary(events: list[tuple[str, int, float]], warmup: int, max_steps: int) -> dict:
    """Medians of step, in-epoch gap and epoch-boundary gap after ``warmup`` steps; steps/s over the timed part."""
    starts = [e for e in events if e[0] == "start"][warmup:]
    ends = [e for e in events if e[0] == "end"][warmup:]
    steps = [end[2] - start[2] for start, end in zip(starts, ends, strict=False)]
    in_epoch, boundary = [], []
    for end, start in zip(ends, starts[1:], strict=False):
        (in_epoch if end[1] == start[1] else boundary).append(start[2] - end[2])
    rate = (len(ends) - 1) / (ends[-1][2] - ends[0][2])
    return {
        "timed_steps": len(steps),
        "step_s": round(statistics.median(steps), 4),
        "gap_in_epoch_s": round(statistics.median(in_epoch), 4) if in_epoch else None,
        "epoch_boundary_s": round(statistics.median(boundary), 4) if boundary else None,
        "epoch_boundary_max_s": round(max(boundary), 4) if boundary else None,
        "steps_per_s": round(rate, 3),
        "recipe_max_steps": max_steps,
        "recipe_projected_h": round(max_steps / rate / 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="experiments/recipes/gpu/generator.yaml")
    parser.add_argument("--dataset", default="experiments/data/breastmnist.yaml", help="data fragment")
    parser.add_argument("--steps", type=int, default=60, help="optimiser steps per variant, warm-up included")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=None, help="override the recipe's (e.g. to try it on a CPU)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = parser.parse_args()
    dataset = yaml.safe_load(Path(args.dataset).read_text())["data"]["init_args"]
    recipe = yaml.safe_load(Path(args.recipe).read_text())
    ema = [c for c in recipe["trainer"].get("callbacks", []) if c["class_path"].endswith("EMAWeightAveraging")]
    for name in args.variants:
        torch.set_float32_matmul_precision("high" if name == "tf32" else "highest")
        with tempfile.TemporaryDirectory() as tmp:
            trainer = {"default_root_dir": tmp, "max_steps": args.steps, "callbacks": ema}
            overrides = {**VARIANTS[name], "trainer": {**trainer, **VARIANTS[name].get("trainer", {})}}
            if args.batch_size:
                overrides["data"] = {"init_args": {"batch_size": args.batch_size}}
            cli = build_stage(Path(args.recipe), dataset, seed=0, overrides=overrides)
            clock = Clock()
            cli.trainer.callbacks.append(clock)
            start = time.perf_counter()
            cli.trainer.fit(cli.model, datamodule=cli.datamodule)
            fit_s = time.perf_counter() - start
            checkpoint = Path(tmp) / "probe.ckpt"  # what a last.ckpt of this fit costs to write
            start = time.perf_counter()
            cli.trainer.save_checkpoint(checkpoint)
            write_s, checkpoint_mb = time.perf_counter() - start, checkpoint.stat().st_size / 2**20
        row = {"benchmark": "generator_step", "variant": name, "recipe": args.recipe, "fit_s": round(fit_s, 1)}
        row |= {"checkpoint_mb": round(checkpoint_mb, 1), "checkpoint_write_s": round(write_s, 2)}
        row |= {"device": str(cli.trainer.strategy.root_device), "precision": str(cli.trainer.precision)}
        print(json.dumps(row | summary(clock.events, args.warmup, recipe["trainer"]["max_steps"])), flush=True)
    torch.set_float32_matmul_precision("highest")


if __name__ == "__main__":
    main()
