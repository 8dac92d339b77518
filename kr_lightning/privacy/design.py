"""Membership design of the audit: the keep matrix and its leave-one-out split (LiRA's reference ``train.py``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def keep_matrix(
    n_models: int, n_examples: int, rng: np.random.Generator, n_in: int | ArrayLike | None = None
) -> np.ndarray:
    """Random membership design of LiRA's reference ``train.py``: each example is IN for exactly ``n_in`` models.

    For each example a random permutation of the models is drawn and the first ``n_in`` get it IN (LiRA's design
    is ``n_in = M / 2``; an inclusion probability ``n_in / M`` other than 1/2 makes the reference models train on
    as many images as a deployed model that saw a larger share of the pool).

    Args:
        n_models: M >= 2.
        n_examples: N.
        rng: numpy random generator.
        n_in: Models that train on each example: one number, or one per example ``(N,)``; each in ``[1, M - 1]``.
            ``None``: M / 2 (M even).

    Returns:
        (M, N) bool, True where model m trains on example n; column n has exactly ``n_in[n]`` True.
    """
    if n_in is None:
        if n_models < 2 or n_models % 2:
            raise ValueError(f"n_models must be even and >= 2, got {n_models}")
        n_in = n_models // 2
    counts = np.broadcast_to(np.asarray(n_in, dtype=int), (n_examples,))
    if counts.size and (counts.min() < 1 or counts.max() > n_models - 1):
        raise ValueError(f"each example needs 1 <= n_in <= M - 1 = {n_models - 1}; got {counts.min()}..{counts.max()}")
    return rng.random((n_models, n_examples)).argsort(axis=0) < counts[None, :]


def leave_one_out(i: int, keep: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Split a keep matrix for target model ``i``: its membership and the indices of the other models.

    Args:
        i: index of the target model in [0, M).
        keep: (M, N) bool keep matrix.

    Returns:
        ``(is_member, ref_idx)``: (N,) bool ground truth for target i, and (M - 1,) int indices of the
        reference models; ``keep[ref_idx]`` is their (M - 1, N) ``ref_in_mask``.
    """
    keep = np.asarray(keep, dtype=bool)
    if keep.ndim != 2 or not 0 <= i < keep.shape[0]:
        raise ValueError(f"expected keep (M, N) and 0 <= i < M, got shape {keep.shape} and i={i}")
    return keep[i].copy(), np.delete(np.arange(keep.shape[0]), i)
