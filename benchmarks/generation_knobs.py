"""Generation knobs: batch size, grad mode, threads, memory layout, compile (same images) and bf16 (close images).

Every variant samples the same ``--n`` images (same labels, same noise, the GKD default sampler) with the trained
generator. All variants are built and warmed up first, then timed in ``--rounds`` interleaved rounds (each variant
once per round) so that drifts of the machine's speed hit every variant alike. Prints one JSON line per variant with
the median images/s and the max / mean |difference| to the reference images (batched CFG, ``no_grad``, one batch of
up to 256 (the former default), all threads, contiguous, eager, float32), then a summary line with the fastest.

    python benchmarks/generation_knobs.py --generator runs/breastmnist/seed0/generator/export --n 256
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time

import torch

from kr_lightning.models import ClassConditionalPipeline
from kr_lightning.models.loading import load_generator
from kr_lightning.models.speedups import bf16_unsupported
from kr_lightning.seeding import SAMPLING, make_rng
from kr_lightning.synthetic_dataset import resolve_device


def variants(n: int, threads: int, tuned: int, bf16: bool, cpu: bool) -> dict[str, dict]:
    """Name -> knobs; the first (the former default: one batch of up to 256, eager, contiguous) is the reference."""
    base = {"batch_size": min(n, 256), "inference_mode": False, "threads": threads, "channels_last": False}
    base |= {"compile": False, "bf16": False}
    out = {"reference": base}
    for batch in (16, 32, 64, 128):
        if batch < base["batch_size"]:
            out[f"batch_size={batch}"] = base | {"batch_size": batch}
    at = base | {"batch_size": tuned}
    out[f"batch_size={tuned}+inference_mode"] = at | {"inference_mode": True}
    if threads > 1 and cpu:
        out[f"batch_size={tuned}+threads=1"] = at | {"threads": 1}
    out[f"batch_size={tuned}+channels_last"] = at | {"channels_last": True}
    out[f"batch_size={tuned}+channels_last+compile"] = at | {"channels_last": True, "compile": True}
    out["channels_last+compile"] = base | {"channels_last": True, "compile": True}
    if bf16:  # only where the CPU / GPU has native bf16 units (else it would be emulated, and slow)
        out[f"batch_size={tuned}+bf16"] = at | {"bf16": True}
        fast = {"channels_last": True, "compile": True, "bf16": True}
        out[f"batch_size={tuned}+channels_last+compile+bf16"] = at | fast
    return out


def prepare(frozen: ClassConditionalPipeline, labels: torch.Tensor, knobs: dict, args: argparse.Namespace):
    """A warmed-up ``draw()`` (every batch shape compiled once) of all ``labels`` with ``knobs``, and the warm-up s."""
    variant = copy.deepcopy(frozen)
    variant.optimize(channels_last=knobs["channels_last"], compile=knobs["compile"], bf16=knobs["bf16"])
    common = dict(num_inference_steps=args.steps, guidance_scale=args.guidance, sampler=args.sampler)
    common |= dict(batch_size=knobs["batch_size"])
    mode = torch.inference_mode if knobs["inference_mode"] else contextlib.nullcontext

    def draw(chosen: torch.Tensor = labels, seed: int = 0) -> torch.Tensor:
        previous = torch.get_num_threads()
        torch.set_num_threads(knobs["threads"])
        try:
            with mode():
                return variant(chosen, generator=make_rng(seed, stream=SAMPLING), **common).images.clone()
        finally:
            torch.set_num_threads(previous)

    warm = time.perf_counter()
    draw(labels[: knobs["batch_size"]], 1)
    if len(labels) % knobs["batch_size"]:  # the last, smaller batch has its own compiled shape
        draw(labels[: len(labels) % knobs["batch_size"]], 1)
    return draw, time.perf_counter() - warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="runs/breastmnist/seed0/generator/export")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--sampler", default="dpmsolver++")
    parser.add_argument("--tuned-batch", type=int, default=32, help="batch size of the grad-mode/threads/layout rows")
    parser.add_argument("--rounds", type=int, default=3, help="timings per variant (median), variants interleaved")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    args = parser.parse_args()

    device = resolve_device(args.device)
    frozen = load_generator(args.generator, device=device)
    labels = torch.arange(args.n) % frozen.num_classes
    bf16 = bf16_unsupported(device) is None
    draws, rows = {}, {}
    cpu = device.type == "cpu"
    for name, knobs in variants(args.n, torch.get_num_threads(), args.tuned_batch, bf16, cpu).items():
        draws[name], warmup = prepare(frozen, labels, knobs, args)
        rows[name] = {"benchmark": "generation_knob", "variant": name, **knobs, "warmup_s": round(warmup, 1)}
    seconds: dict[str, list[float]] = {name: [] for name in draws}
    images: dict[str, torch.Tensor] = {}
    for _ in range(args.rounds):  # every variant once per round, so slow drifts of the machine hit all alike
        for name, draw in draws.items():
            start = time.perf_counter()
            images[name] = draw().cpu()  # copying back waits for the GPU
            seconds[name].append(time.perf_counter() - start)
    reference = images["reference"]
    results = []
    for name, row in rows.items():
        diff = (images[name] - reference).abs()
        row |= {"img_per_s": round(args.n / statistics.median(seconds[name]), 2), "rounds": args.rounds}
        row |= {"img_per_s_each": [round(args.n / s, 2) for s in seconds[name]]}
        row |= {"max_abs_diff_vs_reference": float(diff.max()), "mean_abs_diff_vs_reference": float(diff.mean())}
        results.append(row)
        print(json.dumps(row), flush=True)
    fastest = max(results, key=lambda r: r["img_per_s"])
    exact = max((r for r in results if not r["bf16"]), key=lambda r: r["img_per_s"])
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
                "fastest_float32": exact["variant"],
                "fastest_float32_speedup": round(exact["img_per_s"] / results[0]["img_per_s"], 3),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
