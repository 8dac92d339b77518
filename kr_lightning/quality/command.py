"""``python -m kr_lightning quality``: score a generator (or an npz of synthetic images) without downloads."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kr_lightning import artifacts
from kr_lightning.data.arrays import check_split, to_tensor
from kr_lightning.data.datamodule import ImageDataModule
from kr_lightning.distill.synthesis import balanced_labels, synthesize
from kr_lightning.errors import ConfigError, MissingInputError
from kr_lightning.models.loading import load_generator
from kr_lightning.models.sampling import GuidanceInterval, SamplerKind, check_interval, knobs_name
from kr_lightning.quality.scorer import SET_METRICS, QualityScorer
from kr_lightning.seeding import QUALITY, make_rng
from kr_lightning.synthetic_dataset import resolve_device


def generated_images(
    generator: str,
    num_classes: int,
    n: int,
    *,
    steps: int | None,
    guidance: float | None,
    sampler: SamplerKind | None,
    seed: int,
    guidance_interval: GuidanceInterval | list[float] | None = None,
    batch_size: int = 256,
    progress: bool = False,
    device: torch.device | str = "cpu",
    bf16: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """``n`` class-balanced images of ``generator`` (float32 ``[-1, 1]``, on the CPU), their classes and the knobs.

    The UNet runs on ``device`` (under bfloat16 autocast with ``bf16``); the noise is drawn on the CPU, so the
    starting noise is the same on every device.
    """
    pipe = load_generator(generator, device).optimize(bf16=bf16)
    if pipe.num_classes != num_classes:
        raise ConfigError(f"{generator} generates {pipe.num_classes} classes; the dataset has {num_classes}")
    knobs = {
        "steps": pipe.sample_steps if steps is None else steps,
        "guidance": pipe.sample_guidance if guidance is None else guidance,
        "sampler": pipe.sampler if sampler is None else sampler,
        "guidance_interval": None if guidance_interval is None else check_interval(guidance_interval),
    }
    labels = balanced_labels(num_classes, n)
    rng = make_rng(seed, stream=QUALITY)  # the same noise for every generator and knob setting scored
    images = synthesize(pipe, labels, rng, batch_size=batch_size, progress=progress, **knobs)
    return images.float().cpu(), labels, knobs


def npz_images(path: str, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``train_images`` / ``train_labels`` of an npz written by ``python -m kr_lightning sample``."""
    if not Path(path).is_file():
        raise MissingInputError(f"npz not found: {path}")
    with np.load(path) as f:
        if "train_images" not in f or "train_labels" not in f:
            raise ConfigError(f"{path} needs train_images and train_labels (the layout `sample` writes)")
        split = check_split("train", f["train_images"], f["train_labels"], num_classes=num_classes, source=path)
    return to_tensor(split.images), torch.from_numpy(split.labels)


def format_table(result: dict[str, Any], reference: dict[str, Any]) -> str:
    """Synthetic, size-matched synthetic and real-vs-real values side by side."""
    matched = result["matched"]
    rows = [f"{'metric':<12}{'synthetic':>12}{'matched':>16}{'real val':>12}"]
    rows.append(f"{'n':<12}{result['n']:>12}{matched['n']:>16}{reference['n']:>12}")
    for key in ("fidelity", "confidence", "hf_energy", *SET_METRICS):
        m = f"{matched[key]:.4f}±{matched['sd'][key]:.3f}" if key in matched else ""
        rows.append(f"{key:<12}{result[key]:>12.4f}{m:>16}{reference[key]:>12.4f}")
    for key in ("fidelity_per_class", "coverage_per_class"):
        fmt = lambda v: " ".join("nan" if math.isnan(x) else f"{x:.3f}" for x in v)  # noqa: E731
        rows.append(f"{key}: synthetic [{fmt(result[key])}], real val [{fmt(reference[key])}]")
    return "\n".join(rows)


def quality(
    *,
    data: ImageDataModule,
    teacher_ckpt: str,
    generator: str | None = None,
    npz: str | None = None,
    n: int = 1000,
    steps: int | None = None,
    guidance: float | None = None,
    sampler: SamplerKind | None = None,
    guidance_interval: list[float] | None = None,
    seed: int = 0,
    out: str | None = None,
    device: str = "auto",
    run_root: str = "runs",
    seed_dir: str | None = None,
) -> dict[str, Any]:
    """Score a generator or an npz: class fidelity, FD, precision / recall / density / coverage, pixel texture.

    The features and the class judge are the teacher's; each value is printed beside the same metric for the real
    val split (what a perfect generator would score) and, for the size-dependent ones, on synthetic subsets of the
    val split's size. Writes ``<out>/<name>.json`` when ``out`` is given. The test split is never read.

    Args:
        data: The real dataset (train is the reference set, val the real-vs-real reference).
        teacher_ckpt: Teacher checkpoint (feature space and class judge).
        generator: Generator checkpoint or export folder (or give ``npz``).
        npz: Synthetic images in the layout ``python -m kr_lightning sample`` writes.
        n: Class-balanced images drawn from ``generator``.
        steps: Sampler steps (``None``: the generator's default).
        guidance: Guidance scale (``None``: the generator's default).
        sampler: Sampler (``None``: the generator's default).
        guidance_interval: Guide only at noise levels ``lo < sigma <= hi`` (``None``: every step).
        seed: Seed of the sampling noise and of the matched subsets.
        out: Folder for the result JSON (``None``: print only).
        device: Where the generator and the teacher run (``auto``: CUDA when available, else CPU).
        run_root: Root of the run folders (recipes derive ``seed_dir`` and the paths above from it).
        seed_dir: This dataset and seed's folder, ``${run_root}/<flag>/seed<seed>`` in the recipes.
    """
    if (generator is None) == (npz is None):
        raise ConfigError("give exactly one of --generator (checkpoint or export folder) or --npz")
    dev = resolve_device(device)
    scorer = QualityScorer.from_data(data, teacher_ckpt, seed=seed, device=dev)
    if generator is not None:
        images, labels, knobs = generated_images(
            generator,
            data.num_classes,
            n,
            steps=steps,
            guidance=guidance,
            sampler=sampler,
            guidance_interval=guidance_interval,  # checked there
            seed=seed,
            progress=True,
            device=dev,
        )
        source, name = generator, f"{Path(generator).stem}-{knobs_name(**knobs)}"
    else:
        images, labels = npz_images(npz, data.num_classes)
        source, name, knobs = npz, Path(npz).stem, {}
    result = {"source": source, "knobs": knobs, "seed": seed, "teacher": teacher_ckpt, "dataset": data.name}
    result |= {"synthetic": scorer.score(images, labels), "reference": scorer.reference()}
    print(format_table(result["synthetic"], result["reference"]))
    if out is not None:
        path = Path(out) / f"{name}-n{len(labels)}-seed{seed}.json"
        artifacts.write_json(path, result)
        print(f"quality: wrote {path}")
    return result
