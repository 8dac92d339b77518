"""Offline RMIA (Zarifzadeh et al. 2024) from saved true-class probabilities (pure numpy).

Sign convention as in :mod:`kr_lightning.privacy.attacks`: a larger score means "more likely a member".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

_TINY = 1e-300  # floor for RMIA's P(x) so that a = 1 with P_OUT(x) = 0 stays finite


def out_reference_mean(
    probs: np.ndarray, out_mask: np.ndarray | None, n_ref: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the mean of the first ``n_ref`` usable OUT references (not NaN, ``out_mask`` True), and their count.

    ``probs`` is ``(R, N)``; a column with no usable reference gets NaN.
    """
    use = ~np.isnan(probs)
    if out_mask is not None:
        use &= np.asarray(out_mask, dtype=bool)
    if n_ref is not None:
        use &= np.cumsum(use, axis=0) <= n_ref
    count = use.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(use, probs, 0.0).sum(axis=0) / count
    return np.where(count > 0, mean, np.nan), count


def rmia_offline(
    target_prob: ArrayLike,
    ref_prob_out: ArrayLike,
    pop_target_prob: ArrayLike,
    pop_ref_prob_out: ArrayLike,
    a: float = 0.3,
    gamma: float = 1.0,
    *,
    ref_out_mask: ArrayLike | None = None,
    pop_out_mask: ArrayLike | None = None,
    n_ref: int | None = None,
    tie_break: bool = False,
) -> np.ndarray:
    """Offline RMIA (Zarifzadeh et al. 2024): Score(x) = fraction of population z with LR(x, z) >= gamma.

    P(x|theta) is the target's softmax probability of the true label, P_OUT(x) the mean of the OUT
    references' probabilities, and P(x) = ((1 + a) P_OUT(x) + (1 - a)) / 2, the same for z. LR(x, z) =
    r(x) / r(z) with r = P(.|theta) / P(.). The r(z) are sorted once and counted with ``np.searchsorted``
    (r(z) <= r(x) / gamma), in O((|X| + |Z|) log |Z|) instead of |X| x |Z|. The default is the paper's score,
    the count alone.

    Tie-break (opt-in, not the paper's): with few population points many x share a count, which erases the
    low-FPR region. With ``tie_break`` the score is ``count / |Z| + r(x) / (1 + r(x)) / (2 |Z|)``: the added
    term is below half a count step, so examples with different counts keep their order and equal counts are
    ranked by r(x).

    References: entries that are NaN, or False in ``ref_out_mask`` / ``pop_out_mask``, are ignored. With
    ``n_ref`` only the first ``n_ref`` usable OUT references (in row order) count, **for x and z alike**, so
    the population is scored with the same number of references as the audited examples. An x or z with no
    usable reference gets the mean P_OUT of the population points that have one (the mean of all reference
    probabilities on the population when none has). In a leave-one-out design pick
    ``n_ref <= M/2 - 1`` so that members (M/2 OUT references) and non-members (M/2 - 1) use equally many: with
    unequal counts a no-signal simulation gave AUC 0.494 instead of 0.5 at a = 1 (negligible at a = 0.3).

    Args:
        target_prob: (N,) P(x|theta) of the target model (average queries beforehand).
        ref_prob_out: (R, N) P(x|theta_r) of the reference models, R >= 1.
        pop_target_prob: (Z,) P(z|theta) on population points the target never trained on.
        pop_ref_prob_out: (R, Z) P(z|theta_r).
        a: offline interpolation parameter in [0, 1] (0.3 in the RMIA configs).
        gamma: LR threshold > 0 (1 in privacy_meter, 2 in the paper's CIFAR configs).
        ref_out_mask: optional (R, N) bool, True where reference r did NOT train on x.
        pop_out_mask: optional (R, Z) bool, True where reference r did NOT train on z.
        n_ref: optional number of OUT references to use per example and per population point.
        tie_break: add the continuous tie-break term described above.

    Returns:
        (N,) scores: count / |Z| in [0, 1] (plus the tie-break term, < 1 / (2 |Z|), when asked); larger = member.
    """
    p_x, p_ref = np.asarray(target_prob, np.float64), np.asarray(ref_prob_out, np.float64)
    p_z, p_ref_z = np.asarray(pop_target_prob, np.float64), np.asarray(pop_ref_prob_out, np.float64)
    if p_x.ndim != 1 or p_ref.ndim != 2 or p_ref.shape[1] != p_x.size:
        raise ValueError(f"expected target_prob (N,) and ref_prob_out (R, N), got {p_x.shape} and {p_ref.shape}")
    if p_z.ndim != 1 or p_ref_z.shape != (p_ref.shape[0], p_z.size) or p_z.size == 0:
        raise ValueError(
            f"expected pop_target_prob (Z,) with Z >= 1 and pop_ref_prob_out (R={p_ref.shape[0]}, Z), "
            f"got {p_z.shape} and {p_ref_z.shape}"
        )
    if not 0.0 <= a <= 1.0 or gamma <= 0:
        raise ValueError(f"need a in [0, 1] and gamma > 0, got a={a!r}, gamma={gamma!r}")
    if n_ref is not None and n_ref < 1:
        raise ValueError(f"n_ref must be >= 1 or None, got {n_ref}")
    p_out_x, _ = out_reference_mean(p_ref, None if ref_out_mask is None else np.asarray(ref_out_mask), n_ref)
    p_out_z, _ = out_reference_mean(p_ref_z, None if pop_out_mask is None else np.asarray(pop_out_mask), n_ref)
    for name, v in (
        ("target_prob", p_x),
        ("ref_prob_out", p_ref[~np.isnan(p_ref)]),
        ("pop_target_prob", p_z),
        ("pop_ref_prob_out", p_ref_z[~np.isnan(p_ref_z)]),
    ):
        if not ((v >= 0) & (v <= 1)).all():
            raise ValueError(f"{name} must hold probabilities in [0, 1] (NaN: no reference)")
    # no OUT reference for a point: the population's mean P_OUT (every reference's mean if none has one)
    fallback = np.nanmean(p_out_z) if not np.isnan(p_out_z).all() else np.nanmean(p_ref_z)
    p_out_x, p_out_z = np.where(np.isnan(p_out_x), fallback, p_out_x), np.where(np.isnan(p_out_z), fallback, p_out_z)
    ratio_x = p_x / np.maximum(0.5 * ((1 + a) * p_out_x + (1 - a)), _TINY)
    ratio_z = np.sort(p_z / np.maximum(0.5 * ((1 + a) * p_out_z + (1 - a)), _TINY))
    score = np.searchsorted(ratio_z, ratio_x / gamma, side="right") / ratio_z.size
    return score + ratio_x / (1.0 + ratio_x) / (2 * ratio_z.size) if tie_break else score
