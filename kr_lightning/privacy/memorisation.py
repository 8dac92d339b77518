"""Generator memorisation audit: is each synthetic image closer to a training image than to held-out ones?

All functions are pure: ``(N, D)`` float feature arrays in, distances and summaries out. Features are flattened
pixels in ``[-1, 1]`` or a classifier's penultimate embedding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kr_lightning import artifacts
from kr_lightning.grids import grid_image


def nearest(queries: np.ndarray, reference: np.ndarray, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance ``(Q,)`` and index ``(Q,)`` of each query's nearest reference row."""
    ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))
    dist, index = [], []
    for start in range(0, len(queries), batch_size):
        q = torch.from_numpy(np.ascontiguousarray(queries[start : start + batch_size], dtype=np.float32))
        d = torch.cdist(q, ref)
        value, where = d.min(dim=1)
        dist.append(value.numpy())
        index.append(where.numpy())
    return np.concatenate(dist), np.concatenate(index)


def memorisation_summary(
    synthetic: np.ndarray, train: np.ndarray, heldout: np.ndarray, rng: np.random.Generator
) -> dict[str, float]:
    """Distances of synthetic images to the training set vs a held-out set of real images.

    * ``share_closer_to_train``: fraction of synthetic images whose nearest training image is closer than their
      nearest held-out image, with the training set subsampled to the held-out size (about 0.5 when the generator
      does not favour its training images; 1.0 when it copies them).
    * ``share_below_heldout_p1``: fraction of synthetic images closer to a training image than the 1st percentile
      of the held-out-to-train nearest-neighbour distances (real images that were never trained on give 1 %).
    """
    sub = rng.choice(len(train), size=min(len(train), len(heldout)), replace=False)
    d_train_sub, _ = nearest(synthetic, train[sub])
    d_held, _ = nearest(synthetic, heldout)
    d_train, _ = nearest(synthetic, train)
    baseline, _ = nearest(heldout, train)
    p1 = float(np.percentile(baseline, 1))
    return {
        "n_synthetic": int(len(synthetic)),
        "n_train": int(len(train)),
        "n_heldout": int(len(heldout)),
        "share_closer_to_train": float(np.mean(d_train_sub < d_held)),
        "share_below_heldout_p1": float(np.mean(d_train < p1)),
        "heldout_to_train_p1": p1,
        "median_synthetic_to_train": float(np.median(d_train)),
        "median_heldout_to_train": float(np.median(baseline)),
    }


def closest_pairs_figure(path: str | Path, synthetic: torch.Tensor, train: torch.Tensor, k: int = 8) -> Path:
    """PNG: the ``k`` synthetic images nearest to a training image (top row) above those training images."""
    flat_s = synthetic.flatten(1).numpy()
    dist, index = nearest(flat_s, train.flatten(1).numpy())
    order = np.argsort(dist)[:k]
    pairs = torch.cat([synthetic[order], train[index[order]]])
    grid = grid_image(pairs, per_row=len(order))
    from torchvision.utils import save_image

    return artifacts.atomic_write(path, lambda fh: save_image(grid, fh, format="png"))
