"""Sampler throughput: ours (batched CFG + channels-last + torch.compile [+ bf16]) vs a naive two-forward loop.

Every variant, the naive loop included, gets the same batch size, noise and a warm-up run before any timing. Prints
JSON lines: one per sampler variant (images/s best of ``--repeats``, max and mean |difference| to the naive images),
one per variant with the median speed-up of ``--pairs`` interleaved timings (naive, then every variant, in turn),
then the summary line, whose ``naive_img_per_s``, ``ours_img_per_s`` and ``speedup`` are the **interleaved medians**,
and the UNet's achieved GFLOP/s against a large matmul (``torch.utils.flop_counter``). The bf16 variant runs only
where the CPU (or GPU) has native bf16 units (``--bf16 force``: also where bf16 is emulated, to measure it).

``--ours-steps`` / ``--ours-sampler`` / ``--ours-guidance`` / ``--ours-interval`` give our variants other sampling
knobs than the naive loop (e.g. fewer steps, guidance on an interval of noise levels), and ``--ours-generator``
another generator (e.g. the few-step one distilled from ``--generator``): the ratio is then cost at the two
settings (the image differences are then not rounding), and whether they give equal quality is measured by
``benchmarks/sampling_frontier.py``.

    python benchmarks/sampling.py --generator runs/breastmnist/seed0/generator/export --n 64 --batch 32 --steps 20
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from kr_lightning.models import DiffusionGenerator
from kr_lightning.models.loading import load_generator
from kr_lightning.models.sampling import make_scheduler, sample
from kr_lightning.models.speedups import bf16_unsupported
from kr_lightning.seeding import SAMPLING, make_rng
from kr_lightning.synthetic_dataset import resolve_device


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock timings cover it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def naive_sample(unet, config, labels, *, steps, guidance, null_label, rng, sampler, batch_size):
    """The textbook loop: conditional and unconditional predictions from two separate forwards per step."""
    size, device = unet.config.sample_size, unet.device
    noise = torch.randn((len(labels), unet.config.in_channels, size, size), generator=rng).to(device)
    labels = labels.to(device)
    out = []
    for start in range(0, len(labels), batch_size):
        scheduler = make_scheduler(config, sampler)
        scheduler.set_timesteps(steps, device=device)
        x = noise[start : start + batch_size] * scheduler.init_noise_sigma
        y = labels[start : start + batch_size]
        null = torch.full_like(y, null_label)
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(x, t)
            cond = unet(x_in, t, class_labels=y).sample
            uncond = unet(x_in, t, class_labels=null).sample
            x = scheduler.step(uncond + guidance * (cond - uncond), t, x).prev_sample
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


def best_time(fn, repeats, device):
    best, out = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, out


def matmul_gflops(device, size=2048, repeats=5):
    """Achieved GFLOP/s of a large float32 matmul (the device's practical peak for dense work)."""
    size = size if device.type == "cpu" else 4 * size  # a GPU needs a larger problem to reach its peak
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    seconds, _ = best_time(lambda: a @ b, repeats, device)
    return 2 * size**3 / seconds / 1e9


def unet_gflops(unet, batch, repeats=5, timed=None):
    """FLOPs of one batched CFG forward of ``batch`` rows (flop_counter on ``unet``) and the achieved GFLOP/s of
    ``timed`` (default ``unet``; e.g. its channels-last compiled copy, which does the same FLOPs)."""
    timed, device = unet if timed is None else timed, unet.device
    x = torch.randn(batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size, device=device)
    t, y = torch.tensor(500, device=device), torch.zeros(batch, dtype=torch.long, device=device)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            unet(x, t, class_labels=y)
        layout = torch.channels_last if timed.conv_in.weight.is_contiguous(memory_format=torch.channels_last) else None
        x = x.contiguous(memory_format=layout) if layout else x
        timed(x, t, class_labels=y)  # warm-up (and compile, for a compiled copy)
        seconds, _ = best_time(lambda: timed(x, t, class_labels=y), repeats, device)
    return counter.get_total_flops(), counter.get_total_flops() / seconds / 1e9


def gflops_by_rows(frozen, rows, peak):
    """One JSON line per forward batch size: achieved GFLOP/s eager and channels-last compiled, vs the matmul."""
    fast = copy.deepcopy(frozen)
    fast.optimize(channels_last=True, compile=True)
    for batch in rows:
        _, eager = unet_gflops(frozen.unet, batch)
        _, compiled = unet_gflops(frozen.unet, batch, timed=fast.unet)
        line = {"benchmark": "unet_gflops", "rows": batch, "eager_gflops": round(eager, 1)}
        line |= {"compiled_channels_last_gflops": round(compiled, 1), "matmul_gflops": round(peak, 1)}
        line |= {"eager_fraction": round(eager / peak, 3), "compiled_fraction": round(compiled / peak, 3)}
        print(json.dumps(line), flush=True)


def op_profile(unet, batch, top=8):
    """Share of CPU time (GPU time on a GPU) per operator type in one batched CFG forward (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    device = unet.device
    x = torch.randn(batch, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size, device=device)
    t, y = torch.tensor(500, device=device), torch.zeros(batch, dtype=torch.long, device=device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        unet(x, t, class_labels=y)
        with profile(activities=activities) as prof:
            unet(x, t, class_labels=y)
            synchronize(device)
    key = "self_cpu_time_total" if device.type == "cpu" else "self_device_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    return {e.key: round(getattr(e, key) / total, 3) for e in events[:top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default=None, help="checkpoint or export folder (default: random init)")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--batch", type=int, default=None, help="images per denoising batch, every variant (default n)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--ours-steps", type=int, default=None, help="our variants' steps (default --steps)")
    parser.add_argument("--ours-sampler", default=None, help="our variants' sampler (default --sampler)")
    parser.add_argument("--ours-interval", type=float, nargs=2, default=None, help="our guidance interval lo hi")
    parser.add_argument("--ours-guidance", type=float, default=None, help="our variants' guidance (default --guidance)")
    parser.add_argument(
        "--ours-generator", default=None, help="our variants' generator, e.g. a few-step one (default --generator)"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    parser.add_argument("--pairs", type=int, default=6, help="interleaved naive/ours timings for a median ratio")
    parser.add_argument("--rows", type=int, nargs="*", default=[64, 512], help="forward batch sizes for GFLOP/s")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:1...")
    parser.add_argument(
        "--bf16",
        choices=["auto", "force", "off"],
        default="auto",
        help="bf16 variant: auto = only on native bf16 units; force = also where bf16 is emulated (to measure it)",
    )
    args = parser.parse_args()

    device = resolve_device(args.device)
    if args.generator:
        frozen = load_generator(args.generator, device=device)
    else:
        torch.manual_seed(0)
        frozen = DiffusionGenerator(num_classes=2, in_channels=1, image_size=28).frozen().to(device)
        frozen.unet.eval().requires_grad_(False)
    k, config = frozen.num_classes, frozen.scheduler.config
    labels = torch.arange(args.n) % k
    common = dict(steps=args.steps, guidance=args.guidance, null_label=k, sampler=args.sampler)
    batch = args.batch or args.n

    def naive_fn():
        return naive_sample(frozen.unet, config, labels, rng=make_rng(0, stream=SAMPLING), batch_size=batch, **common)

    ours = common | {"steps": args.ours_steps or args.steps, "sampler": args.ours_sampler or args.sampler}
    ours["guidance"] = args.guidance if args.ours_guidance is None else args.ours_guidance
    mine = load_generator(args.ours_generator, device=device) if args.ours_generator else frozen
    ours["guidance_interval"] = None if args.ours_interval is None else tuple(args.ours_interval)
    naive_fn()  # warm-up: oneDNN builds its kernels per shape on first use
    naive_s, naive = best_time(naive_fn, args.repeats, device)
    variants = {"batched_cfg": {}, "batched_cfg+channels_last": {"channels_last": True}}
    if not args.no_compile:
        variants["batched_cfg+channels_last+compile"] = {"channels_last": True, "compile": True}
    native_bf16 = bf16_unsupported(frozen.device) is None
    if args.bf16 == "force" or (args.bf16 == "auto" and native_bf16):  # measurably, not bitwise, the same images
        last = list(variants)[-1]
        variants[f"{last}+bf16"] = variants[last] | {"bf16": True}
    results, samplers = {}, {}
    for name, knobs in variants.items():
        variant = copy.deepcopy(mine)
        warm = time.perf_counter()
        variant.optimize(**{k: v for k, v in knobs.items() if k != "bf16"})
        if knobs.get("bf16"):
            variant.autocast = torch.bfloat16  # set directly: optimize() refuses it without native bf16 units
        variant(
            labels[:2],
            generator=make_rng(1, stream=SAMPLING),
            num_inference_steps=1,
            guidance_scale=ours["guidance"],
            sampler=ours["sampler"],
        )
        samplers[name] = lambda v=variant: sample(
            v.unet, config, labels, rng=make_rng(0, stream=SAMPLING), batch_size=batch, autocast=v.autocast, **ours
        )
        samplers[name]()  # warm-up at the timed shapes (compiles every batch shape once)
        warmup = time.perf_counter() - warm
        seconds, images = best_time(samplers[name], args.repeats, device)
        results[name] = {
            "variant": name,
            "img_per_s": round(args.n / seconds, 2),
            "speedup_best_of_repeats": round(naive_s / seconds, 3),
            "max_abs_diff_vs_naive": float((images - naive).abs().max()),
            "mean_abs_diff_vs_naive": float((images - naive).abs().mean()),
            "warmup_s": round(warmup, 1),
        }
        print(json.dumps({"benchmark": "sampling_variant", **results[name]}))
    naive_times = []
    for _ in range(max(1, args.pairs)):  # naive and every variant timed in turn: drifts of the machine hit all alike
        naive_times.append(best_time(naive_fn, 1, device)[0])
        for name, draw in samplers.items():
            seconds = best_time(draw, 1, device)[0]
            results[name].setdefault("seconds", []).append(seconds)
            results[name].setdefault("ratios", []).append(naive_times[-1] / seconds)
    for name, result in results.items():
        line = {"benchmark": "sampling_interleaved", "variant": name, "pairs": max(1, args.pairs)}
        ratios = result.pop("ratios")
        line |= {"speedup_median": round(statistics.median(ratios), 3), "speedups": [round(r, 3) for r in ratios]}
        result["speedup_interleaved_median"] = line["speedup_median"]
        result["img_per_s_interleaved_median"] = round(args.n / statistics.median(result.pop("seconds")), 2)
        print(json.dumps(line), flush=True)
    best = max(results.values(), key=lambda r: r["speedup_interleaved_median"])
    exact = max((r for n, r in results.items() if "bf16" not in n), key=lambda r: r["speedup_interleaved_median"])
    flops, achieved = unet_gflops(frozen.unet, 2 * args.n)
    peak = matmul_gflops(device)
    print(
        json.dumps(
            {
                "benchmark": "sampling",
                "n_images": args.n,
                "batch": batch,
                "steps": args.steps,
                "guidance": args.guidance,
                "sampler": args.sampler,
                "ours_knobs": {k: ours[k] for k in ("steps", "sampler", "guidance", "guidance_interval")},
                "ours_generator": args.ours_generator or args.generator,
                "unet_params": sum(p.numel() for p in frozen.unet.parameters()),
                "naive_img_per_s": round(args.n / statistics.median(naive_times), 2),
                "ours_variant": best["variant"],
                "ours_img_per_s": best["img_per_s_interleaved_median"],
                "speedup": best["speedup_interleaved_median"],
                "same_knobs_as_naive": ours == common | {"guidance_interval": None},
                "max_abs_diff": best["max_abs_diff_vs_naive"],
                "mean_abs_diff": best["mean_abs_diff_vs_naive"],
                "float32_variant": exact["variant"],
                "float32_speedup_interleaved_median": exact.get("speedup_interleaved_median"),
                "unet_cfg_forward_gflop": round(flops / 1e9, 3),
                "unet_achieved_gflops": round(achieved, 1),
                "matmul_gflops": round(peak, 1),
                "unet_fraction_of_matmul": round(achieved / peak, 3),
                "unet_cpu_time_share_by_op": op_profile(frozen.unet, 2 * args.n),
                "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                "cpu": torch.cpu.get_capabilities().get("cpu_name"),
                "native_bf16": native_bf16,
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
            }
        )
    )
    if args.rows and not args.no_compile:
        gflops_by_rows(frozen, args.rows, peak)


if __name__ == "__main__":
    main()
