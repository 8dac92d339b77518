"""On-disk cache of generated synthetic sets, keyed by everything the images depend on."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from kr_lightning import artifacts, seeding


def cache_file(
    cache_dir: str | Path,
    generator_source: str,
    device: str,
    *,
    knobs: dict[str, Any],
    seed: int,
    set_index: int,
    rank: int,
    labels: torch.Tensor,
) -> Path:
    """Path ``<cache_dir>/set{index}-rank{r}-{hash}.pt`` of one set.

    The hash covers the generator file (path, size, mtime), the sampling knobs, the seed, the random-stream scheme
    (:data:`kr_lightning.seeding.SCHEME`: sets drawn under another scheme are never reused), the set index, the
    rank, the class labels and the device type.
    """
    source = Path(generator_source)
    weights = source / "unet" / "diffusion_pytorch_model.safetensors" if source.is_dir() else source
    stat = weights.stat()
    key = {
        "generator": str(weights.resolve()),
        "mtime": stat.st_mtime_ns,
        "size": stat.st_size,
        "knobs": knobs,
        "seed": seed,
        "rng": seeding.SCHEME,
        "set": set_index,
        "rank": rank,
        "labels": labels.tolist(),
        "device": device,
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"set{set_index:04d}-rank{rank}-{digest}.pt"


def load(path: Path, device: torch.device) -> torch.Tensor:
    """The cached images (``weights_only`` load)."""
    return torch.load(path, map_location=device, weights_only=True)["x"]


def save(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    """Write a set atomically."""
    artifacts.atomic_write(path, lambda fh: torch.save({"x": images.cpu(), "labels": labels}, fh))
