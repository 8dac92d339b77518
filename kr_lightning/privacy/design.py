"""Membership design of the audit: the keep matrix and its leave-one-out split (LiRA's reference ``train.py``)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def keep_matrix(n_models: int, n_examples: int, rng: np.random.Generator) -> np.ndarray:
    """Random membership design of LiRA's reference ``train.py``: each example is IN for exactly half the models.

    For each example a random permutation of the models is drawn and the first M/2 get it IN.

    Args:
        n_models: M, even and >= 2.
        n_examples: N.
        rng: numpy random generator.

    Returns:
        (M, N) bool, True where model m trains on example n; every column has exactly M/2 True.
    """
    if n_models < 2 or n_models % 2:
        raise ValueError(f"n_models must be even and >= 2, got {n_models}")
    return rng.random((n_models, n_examples)).argsort(axis=0) < n_models // 2


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
