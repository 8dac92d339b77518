"""Generation knobs that should not change the images: batch size, grad mode, threads, memory layout, compile.

Every variant samples the same ``--n`` images (same labels, same noise, the GKD default sampler) with the trained
generator; prints one JSON line per variant with images/s and the max |difference| to the reference images
(batched CFG, ``no_grad``, one batch of up to 256 (the former default), all threads, contiguous, eager), then a
summary line with the fastest.

    python benchmarks/generation_knobs.py --generator runs/breastmnist/generator/export --n 256
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import time

import torch

from kr_lightning.models import FrozenGenerator
from kr_lightning.seeding import make_rng


def variants(n: int, threads: int, tuned: int) -> dict[str, dict]:
    """Name -> knobs; the first (the former default: one batch of up to 256, eager, contiguous) is the reference."""
    base = {"batch_size": min(n, 256), "inference_mode": False, "threads": threads, "channels_last": False}
    base["compile"] = False
    out = {"reference": base}
    for batch in (16, 32, 64, 128):
        if batch < base["batch_size"]:
            out[f"batch_size={batch}"] = base | {"batch_size": batch}
    at = base | {"batch_size": tuned}
    out[f"batch_size={tuned}+inference_mode"] = at | {"inference_mode": True}
    if threads > 1:
        out[f"batch_size={tuned}+threads=1"] = at | {"threads": 1}
    out[f"batch_size={tuned}+channels_last"] = at | {"channels_last": True}
    out[f"batch_size={tuned}+channels_last+compile"] = at | {"channels_last": True, "compile": True}
    out["channels_last+compile"] = base | {"channels_last": True, "compile": True}
    return out


def run(frozen: FrozenGenerator, labels: torch.Tensor, knobs: dict, args: argparse.Namespace):
    """Seconds of one timed generation (after a warm-up at the same shapes) and its images."""
    variant = dataclasses.replace(frozen, unet=copy.deepcopy(frozen.unet))
    variant.optimize(channels_last=knobs["channels_last"], compile=knobs["compile"])
    previous = torch.get_num_threads()
    torch.set_num_threads(knobs["threads"])
    mode = torch.inference_mode if knobs["inference_mode"] else contextlib.nullcontext
    common = dict(steps=args.steps, guidance=args.guidance, sampler=args.sampler, batch_size=knobs["batch_size"])
    draw = variant.sample
    try:
        with mode():
            warm = time.perf_counter()
            if knobs["compile"]:  # every batch shape is compiled once (the last, smaller batch has its own)
                draw(labels[: knobs["batch_size"]], make_rng(1), **common)
                tail = len(labels) % knobs["batch_size"]
                if tail:
                    draw(labels[:tail], make_rng(1), **common)
            else:
                draw(labels[:2], make_rng(1), **common)
            warmup = time.perf_counter() - warm
            start = time.perf_counter()
            images = draw(labels, make_rng(0), **common)
            seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    return seconds, warmup, images.clone()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="runs/breastmnist/generator/export")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--sampler", default="dpmsolver++")
    parser.add_argument("--tuned-batch", type=int, default=32, help="batch size of the grad-mode/threads/layout rows")
    args = parser.parse_args()

    frozen = FrozenGenerator.load(args.generator)
    labels = torch.arange(args.n) % frozen.num_classes
    results, reference = [], None
    for name, knobs in variants(args.n, torch.get_num_threads(), args.tuned_batch).items():
        seconds, warmup, images = run(frozen, labels, knobs, args)
        reference = images if reference is None else reference
        row = {
            "benchmark": "generation_knob",
            "variant": name,
            **knobs,
            "img_per_s": round(args.n / seconds, 2),
            "warmup_s": round(warmup, 1),
            "max_abs_diff_vs_reference": float((images - reference).abs().max()),
        }
        results.append(row)
        print(json.dumps(row), flush=True)
    fastest = max(results, key=lambda r: r["img_per_s"])
    print(
        json.dumps(
            {
                "benchmark": "generation_knobs",
                "n_images": args.n,
                "steps": args.steps,
                "guidance": args.guidance,
                "sampler": args.sampler,
                "reference_img_per_s": results[0]["img_per_s"],
                "fastest": fastest["variant"],
                "fastest_img_per_s": fastest["img_per_s"],
                "speedup": round(fastest["img_per_s"] / results[0]["img_per_s"], 3),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
