"""Sampler throughput: our batched-CFG sampler vs a naive loop with two UNet forwards per step.

Prints one JSON line: ours_img_per_s, naive_img_per_s, speedup, max_abs_diff (same noise, same images).

    python benchmarks/sampling.py                                  # random-init UNet of the BreastMNIST CPU config
    python benchmarks/sampling.py --generator runs/breastmnist/generator/export --n 128 --steps 20
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from kr_lightning.models import DiffusionGenerator, FrozenGenerator
from kr_lightning.models.sampling import make_scheduler, sample
from kr_lightning.seeding import make_rng


@torch.no_grad()
def naive_sample(unet, config, labels, *, steps, guidance, null_label, rng, sampler):
    """The textbook loop: conditional and unconditional predictions from two separate forwards."""
    size = unet.config.sample_size
    x = torch.randn((len(labels), unet.config.in_channels, size, size), generator=rng)
    scheduler = make_scheduler(config, sampler)
    scheduler.set_timesteps(steps)
    x = x * scheduler.init_noise_sigma
    null = torch.full_like(labels, null_label)
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        cond = unet(x_in, t, class_labels=labels).sample
        uncond = unet(x_in, t, class_labels=null).sample
        x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
    return x.clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=None, help="checkpoint or export folder (default: random init)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    if args.generator:
        frozen = FrozenGenerator.load(args.generator)
    else:
        torch.manual_seed(0)
        frozen = DiffusionGenerator(num_classes=2, in_channels=1, image_size=28).frozen()
        frozen.unet.eval().requires_grad_(False)
    unet, config, k = frozen.unet, frozen.scheduler_config, frozen.num_classes
    labels = torch.arange(args.n) % k
    common = dict(steps=args.steps, guidance=args.guidance, null_label=k, sampler=args.sampler)

    def timed(fn):
        best, out = float("inf"), None
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - start)
        return best, out

    naive_s, naive = timed(lambda: naive_sample(unet, config, labels, rng=make_rng(0), **common))
    ours_s, ours = timed(lambda: sample(unet, config, labels, rng=make_rng(0), batch_size=args.n, **common))
    ours = ours[..., : naive.shape[-2], : naive.shape[-1]]
    print(
        json.dumps(
            {
                "benchmark": "sampling",
                "n_images": args.n,
                "steps": args.steps,
                "guidance": args.guidance,
                "sampler": args.sampler,
                "unet_params": sum(p.numel() for p in unet.parameters()),
                "ours_img_per_s": round(args.n / ours_s, 2),
                "naive_img_per_s": round(args.n / naive_s, 2),
                "speedup": round(naive_s / ours_s, 3),
                "max_abs_diff": float((ours - naive).abs().max()),
                "torch_threads": torch.get_num_threads(),
                "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
