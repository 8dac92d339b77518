"""Poisson-sampled training batches for DP-SGD: each image joins each batch independently with probability q.

DP-SGD's privacy accounting (the sampled Gaussian mechanism) assumes this sampling, not a shuffled pass over the
data. Opacus' :class:`~opacus.utils.uniform_sampler.UniformWithReplacementSampler` draws the batches; here its
generator is re-seeded at every epoch from ``(seed, epoch)`` (stream ``POISSON``), which Lightning triggers through
``set_epoch``, so a run resumed at an epoch boundary draws the batches the uninterrupted run would have drawn.
"""

from __future__ import annotations

import math

from opacus.data_loader import wrap_collate_with_empty
from opacus.utils.uniform_sampler import UniformWithReplacementSampler
from torch.utils.data import DataLoader, TensorDataset, default_collate

from kr_lightning.seeding import POISSON, make_rng


class EpochPoissonSampler(UniformWithReplacementSampler):
    """Poisson batches (rate ``sample_rate``, ``1 / sample_rate`` of them an epoch) seeded per epoch.

    Args:
        num_samples: Number of images N.
        sample_rate: Probability q that an image joins a given batch.
        seed: Seed of the per-epoch generators.
    """

    def __init__(self, *, num_samples: int, sample_rate: float, seed: int) -> None:
        super().__init__(num_samples=num_samples, sample_rate=sample_rate, generator=make_rng(seed, 0, stream=POISSON))
        self.seed = seed

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's batches from the generator of ``(seed, epoch)``."""
        self.generator = make_rng(self.seed, epoch, stream=POISSON)


def poisson_loader(dataset: TensorDataset, *, batch_size: int, seed: int, num_workers: int = 0) -> DataLoader:
    """A loader of ``ceil(N / batch_size)`` Poisson batches an epoch with rate ``q = 1 / ceil(N / batch_size)``.

    The expected batch size is ``N q`` (about ``batch_size``), and ``len(loader) == 1 / q`` exactly, the relation
    Opacus' accountant reads the sample rate from. Empty batches (probability ``(1 - q) ** N``) keep their shapes.
    """
    steps = math.ceil(len(dataset) / batch_size)
    sampler = EpochPoissonSampler(num_samples=len(dataset), sample_rate=1 / steps, seed=seed)
    x, y = dataset[0]
    collate = wrap_collate_with_empty(
        collate_fn=default_collate, sample_empty_shapes=[(0, *x.shape), (0,)], dtypes=[x.dtype, y.dtype]
    )
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers)
