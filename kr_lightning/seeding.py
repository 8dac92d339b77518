"""Explicit random generators, one named stream per purpose; nothing here touches the global RNG.

A seed alone never picks a generator: :func:`derive_seed` hashes ``(stream, base, *keys)``, so two purposes never
share random draws, whatever their integer keys (set 0 of the GKD generation and step 0 of the augmentation, or a
data module and a generator run with the same seed). Every call site names its stream with one of these constants:

========================  ===========================  ===============================================================
stream                    keys                         draws
========================  ===========================  ===============================================================
``GENERATION``            ``(set_index, rank)``        sampling noise of one GKD synthetic set (``GKDDataModule``)
``AUGMENTATION``          ``(global_step, rank)``      training-batch augmentation (``ImageDataModule``, GKD batches)
``MIXUP``                 ``(global_step, rank)``      partners and shares of mixed GKD batches (``mixup > 0``)
``NOISE``                 ``(global_step, rank)``      pixel noise of GKD batches (``noise > 0``)
``DIFFUSION_NOISE``       ``(global_step, rank)``      generator training noise, timesteps and label drops
``DIFFUSION_VAL_NOISE``   ``(batch_idx,)``             generator validation noise (the same every epoch)
``SHUFFLE``               ``(rank,)``                  order of a GKD synthetic set (seed of its sampler, + epoch)
``POOL``                  ``(cycle,)``                 which pool slots a GKD pool cycle regenerates
``GRID``                  ``()``                       the fixed noise of ``SampleGrid`` image grids
``EXPORT``                ``()``                       sampling noise of ``synthetic_dataset`` exports
``QUALITY``               ``()``                       the images a generator is scored on (``quality``, ``select``)
``SAMPLING``              free                         one-off sampling noise (benchmarks, tests)
``POISSON``               ``(epoch,)``                 which real images a DP-SGD epoch's Poisson batches hold
``DP_NOISE``              ``(epoch,)``                 the Gaussian noise DP-SGD adds to the clipped gradients
``TRAJECTORIES``          ``(split,)``                 noise of the teacher sampling paths a few-step student learns
========================  ===========================  ===============================================================

What a seed covers: a run's ``seed`` (each module's ``seed``, else ``seed_everything``) fixes every stream above
that the module uses; the keys then make the draws a pure function of the training position, so a resumed run
draws what the uninterrupted run drew. Not covered: weight initialisation and dropout (the global RNG, set by
``seed_everything``), the real train split's order (``DistributedSampler`` seeded with the plain seed) and the
train / val partition (``split_seed``).

:data:`SCHEME` names this stream layout; anything keyed by generated draws (the synthetic-set cache) includes it,
so bump it whenever an existing stream, its keys or the hash change (adding a stream changes no existing draw).
"""

from __future__ import annotations

import hashlib

import torch

SCHEME = "streams-v1"

GENERATION = "generation"
AUGMENTATION = "augmentation"
MIXUP = "mixup"
NOISE = "noise"
DIFFUSION_NOISE = "diffusion-noise"
DIFFUSION_VAL_NOISE = "diffusion-val-noise"
SHUFFLE = "shuffle"
POOL = "pool"
GRID = "grid"
EXPORT = "export"
QUALITY = "quality"
SAMPLING = "sampling"
POISSON = "poisson"
DP_NOISE = "dp-noise"
TRAJECTORIES = "trajectories"
STREAMS = (
    GENERATION,
    AUGMENTATION,
    MIXUP,
    NOISE,
    DIFFUSION_NOISE,
    DIFFUSION_VAL_NOISE,
    SHUFFLE,
    POOL,
    GRID,
    EXPORT,
    QUALITY,
    SAMPLING,
    POISSON,
    DP_NOISE,
    TRAJECTORIES,
)


def derive_seed(base: int, *keys: int, stream: str) -> int:
    """Mix ``stream``, ``base`` and ``keys`` (e.g. epoch, rank, step) into a 63-bit seed.

    Distinct streams or keys give unrelated seeds. ``stream`` must be one of :data:`STREAMS`.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; use one of {STREAMS} (kr_lightning.seeding)")
    digest = hashlib.blake2b(repr((stream, int(base), *map(int, keys))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def make_rng(base: int, *keys: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(base, *keys, stream=stream)``."""
    rng = torch.Generator(device=device)
    rng.manual_seed(derive_seed(base, *keys, stream=stream))
    return rng
