"""Cost of one GKD epoch on BreastMNIST, split into generation, labelling and training, vs a real-data epoch.

Prints one JSON line per synthetic-set size (``--multipliers``): ``gen_s`` (a set after the first, i.e. without a
compile warm-up; ``gen_first_set_s`` is the first), ``label_s``, ``train_s``, their sum ``epoch_s``,
``real_epoch_s`` (the teacher recipe on the real train split, one epoch) and ``ratio_to_real_epoch`` (GKD epoch /
real epoch of the same size, i.e. the real epoch scaled by the multiplier).

    python benchmarks/gkd_epoch.py --multipliers 0.5 1 2
    python benchmarks/gkd_epoch.py --multipliers 1 --data.steps=50 --data.sampler=ddim
        # any further --group.key=value overrides the student recipe (BreastMNIST seed 0 runs by default)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import yaml

from kr_lightning.distill.synthesis import teacher_logits
from kr_lightning.stages import build_stage, deep_merge


def timed(fn):
    """Seconds of ``fn()`` (GPU work included: queued kernels are waited for) and its result."""
    start = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def overrides_from(extra: list[str]) -> dict:
    """``--data.steps=50``-style arguments as a nested config (``data.init_args.steps``; values parsed as YAML)."""
    config: dict = {}
    for arg in extra:
        key, _, value = arg.removeprefix("--").partition("=")
        path = key.split(".")
        if path[0] in ("model", "data") and path[1] != "init_args":
            path.insert(1, "init_args")
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(value)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="experiments/recipes/cpu/student.yaml")
    parser.add_argument("--teacher", default="experiments/recipes/cpu/teacher.yaml")
    parser.add_argument("--dataset", default="experiments/data/breastmnist.yaml", help="data fragment")
    parser.add_argument("--multipliers", type=float, nargs="+", default=[0.5, 1.0, 2.0])
    args, extra = parser.parse_known_args()  # anything else is a student override, e.g. --data.steps=50
    dataset = yaml.safe_load(Path(args.dataset).read_text())["data"]["init_args"]
    with tempfile.TemporaryDirectory() as tmp:

        def stage(recipe, folder, overrides):
            trainer = {"default_root_dir": str(Path(tmp) / folder), "max_epochs": 1, "limit_val_batches": 0}
            return build_stage(
                Path(recipe), dataset, seed=0, overrides=deep_merge({"trainer": trainer}, overrides), quiet=True
            )

        real = stage(args.teacher, "teacher", {})
        real_s, _ = timed(lambda: real.trainer.fit(real.model, datamodule=real.datamodule))
        n_real = len(real.datamodule.split("train"))
        for multiplier in args.multipliers:
            cache = Path(tmp) / f"cache{multiplier}"
            data_args = {"multiplier": multiplier, "regenerate_every": 0, "cache_dir": str(cache)}
            cli = stage(
                args.student,
                f"student{multiplier}",
                deep_merge({"data": {"init_args": data_args}}, overrides_from(extra)),
            )
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
