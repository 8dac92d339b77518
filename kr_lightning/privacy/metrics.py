"""Membership-inference metrics: exact ROC, AUC, balanced accuracy, TPR at low FPR and bootstrap CIs.

Convention everywhere: a **larger score means "more likely a member"** (the opposite of TF-Privacy's
LiRA scores). ``scores`` is a 1-D float array of N attack scores (``-inf``/``inf`` allowed, NaN not) and
``is_member`` a 1-D bool array of the same length with at least one member and one non-member.

Report TPR at a fixed FPR together with the number of non-members: an FPR below ``1 / n_nonmembers``
cannot be resolved (Carlini et al. 2022, "Membership inference attacks from first principles").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import sklearn.metrics
from numpy.typing import ArrayLike

MetricFn = Callable[[np.ndarray, np.ndarray], float]


def _check(scores: ArrayLike, is_member: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to (float64 scores, bool is_member), both 1-D of equal length."""
    scores = np.asarray(scores, dtype=np.float64)
    is_member = np.asarray(is_member)
    if scores.ndim != 1 or is_member.shape != scores.shape:
        raise ValueError(
            f"scores and is_member must be 1-D arrays of equal length, got shapes {scores.shape} and {is_member.shape}"
        )
    if is_member.dtype != bool:
        if not np.isin(is_member, (0, 1)).all():
            raise ValueError("is_member must be boolean (or 0/1), got other values")
        is_member = is_member.astype(bool)
    if np.isnan(scores).any():
        raise ValueError(f"scores must not contain NaN, got {int(np.isnan(scores).sum())} NaN values")
    n_members = int(is_member.sum())
    if n_members == 0 or n_members == is_member.size:
        raise ValueError(
            f"need at least one member and one non-member, got {n_members} members out of {is_member.size}"
        )
    return scores, is_member


def _finite(scores: np.ndarray) -> np.ndarray:
    """``scores`` with the same order and ties but finite: dense ranks when there are infinities.

    scikit-learn refuses infinite scores; every ROC quantity depends only on the order of the scores.
    """
    if np.isfinite(scores).all():
        return scores
    return np.unique(scores, return_inverse=True)[1].astype(np.float64)


def roc_curve(scores: ArrayLike, is_member: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Exact ROC curve, one point per distinct score: ``sklearn.metrics.roc_curve(drop_intermediate=False)``.

    Tied scores are never split: a threshold admits all examples with equal scores at once.

    Args:
        scores: (N,) attack scores, larger = member.
        is_member: (N,) bool ground truth.

    Returns:
        ``(fpr, tpr)``, each (T + 1,) non-decreasing and starting at 0 and ending at 1, where T is the
        number of distinct scores.
    """
    scores, is_member = _check(scores, is_member)
    fpr, tpr, _ = sklearn.metrics.roc_curve(is_member, _finite(scores), drop_intermediate=False)
    return fpr, tpr


def _auc_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(sklearn.metrics.auc(fpr, tpr))


def _balanced_accuracy_from_roc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    return float(np.max((tpr + 1.0 - fpr) / 2.0))


def _tpr_at_fpr_from_roc(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    return float(tpr[fpr <= target].max())


def auc(scores: ArrayLike, is_member: ArrayLike) -> float:
    """Area under the exact ROC curve (``sklearn.metrics.roc_auc_score``; a member / non-member tie counts 1/2)."""
    scores, is_member = _check(scores, is_member)
    return float(sklearn.metrics.roc_auc_score(is_member, _finite(scores)))


def balanced_accuracy(scores: ArrayLike, is_member: ArrayLike) -> float:
    """Best balanced accuracy over thresholds, ``max (TPR + TNR) / 2`` (>= 0.5; Song & Mittal 2021)."""
    return _balanced_accuracy_from_roc(*roc_curve(scores, is_member))


def _check_fpr(fpr: float) -> float:
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must lie in [0, 1], got {fpr!r}")
    return float(fpr)


def tpr_at_fpr(scores: ArrayLike, is_member: ArrayLike, fpr: float) -> float:
    """Largest TPR reachable with FPR <= ``fpr``, as LiRA's reference ``tpr[fpr <= x].max()``.

    Args:
        scores: (N,) attack scores, larger = member.
        is_member: (N,) bool ground truth.
        fpr: target false-positive rate in [0, 1]; ``0`` gives the TPR at zero false positives.

    Returns:
        The TPR in [0, 1]. Check :func:`is_fpr_resolvable` before quoting it.
    """
    return _tpr_at_fpr_from_roc(*roc_curve(scores, is_member), _check_fpr(fpr))


def min_resolvable_fpr(n_nonmembers: int) -> float:
    """Smallest non-zero FPR that ``n_nonmembers`` negatives can show: ``1 / n_nonmembers``."""
    if n_nonmembers < 1:
        raise ValueError(f"n_nonmembers must be >= 1, got {n_nonmembers}")
    return 1.0 / n_nonmembers


def is_fpr_resolvable(fpr: float, n_nonmembers: int) -> bool:
    """Whether TPR at ``fpr`` is measurable with ``n_nonmembers`` negatives, i.e. ``fpr >= 1 / n_nonmembers``.

    The comparison is ``fpr * n_nonmembers >= 1`` up to a relative 1e-9, so that e.g. 0.001 with 1000
    non-members counts as resolvable despite floating-point rounding.
    """
    return _check_fpr(fpr) * n_nonmembers >= 1.0 - 1e-9 and n_nonmembers >= 1


def fpr_key(fpr: float) -> str:
    """Report key for TPR at ``fpr``: ``tpr_at_fpr_0.01``, ``tpr_at_fpr_0.001``, ``tpr_at_fpr_1e-05``."""
    return f"tpr_at_fpr_{_check_fpr(fpr):g}"


def _bootstrap_stats(
    scores: np.ndarray,
    is_member: np.ndarray,
    stats_fn: Callable[[np.ndarray, np.ndarray], np.ndarray],
    rng: np.random.Generator,
    n_boot: int,
    groups: ArrayLike | None,
) -> np.ndarray:
    """(B, S) statistics over bootstrap replicates; replicates lacking a member or a non-member are skipped."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if groups is None:
        strata = [np.flatnonzero(is_member), np.flatnonzero(~is_member)]
    else:
        groups = np.asarray(groups)
        if groups.shape != scores.shape:
            raise ValueError(f"groups must have the shape of scores {scores.shape}, got {groups.shape}")
        _, inverse = np.unique(groups, return_inverse=True)
        clusters = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
        if len(clusters) < 2:
            raise ValueError(f"a cluster bootstrap needs at least 2 groups, got {len(clusters)}")
    replicates = []
    for _ in range(n_boot):
        if groups is None:  # stratified: keep the numbers of members and non-members fixed
            idx = np.concatenate([s[rng.integers(0, s.size, s.size)] for s in strata])
        else:  # cluster: resample whole groups with replacement
            idx = np.concatenate([clusters[g] for g in rng.integers(0, len(clusters), len(clusters))])
        n_members = int(is_member[idx].sum())
        if 0 < n_members < idx.size:
            replicates.append(stats_fn(scores[idx], is_member[idx]))
    if not replicates:
        raise ValueError("no bootstrap replicate held both members and non-members; check is_member and groups")
    return np.asarray(replicates, dtype=np.float64).reshape(len(replicates), -1)


def _percentiles(stats: np.ndarray, level: float) -> np.ndarray:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    return np.quantile(stats, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)


def bootstrap_ci(
    scores: ArrayLike,
    is_member: ArrayLike,
    metric_fn: MetricFn,
    rng: np.random.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
    groups: ArrayLike | None = None,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``metric_fn(scores, is_member)``.

    Without ``groups`` the bootstrap is stratified: members and non-members are resampled separately, so
    every replicate keeps the original counts (and hence the same resolvable FPRs). With ``groups`` (e.g. the
    target-model index of each pooled score) whole groups are resampled with replacement (cluster bootstrap),
    which accounts for scores of one target model being correlated. Replicates that lack a member or a
    non-member are skipped.

    Args:
        scores: (N,) attack scores, larger = member.
        is_member: (N,) bool ground truth.
        metric_fn: ``metric_fn(scores, is_member) -> float``, e.g. :func:`auc`.
        rng: numpy random generator.
        n_boot: number of bootstrap replicates.
        level: coverage of the interval, e.g. 0.95.
        groups: optional (N,) group label per score for the cluster bootstrap.

    Returns:
        ``(low, high)`` percentiles of the bootstrap distribution.
    """
    scores, is_member = _check(scores, is_member)
    stats = _bootstrap_stats(scores, is_member, lambda s, m: np.array([metric_fn(s, m)]), rng, n_boot, groups)
    low, high = _percentiles(stats[:, 0], level)
    return float(low), float(high)


def summarize(
    scores: ArrayLike,
    is_member: ArrayLike,
    rng: np.random.Generator,
    fprs: Sequence[float] = (0.01, 0.001),
    n_boot: int = 1000,
    level: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict[str, float | int | bool | str | list[float]]:
    """All headline metrics with bootstrap CIs, as a JSON-serialisable dict.

    Keys: ``auc``, ``balanced_accuracy``, ``tpr_at_fpr_<fpr>`` (see :func:`fpr_key`), each with a
    ``<key>_ci`` ``[low, high]`` list; ``tpr_at_fpr_<fpr>_resolvable`` (bool); ``min_resolvable_fpr``
    (``1 / n_nonmembers``); ``n_members``, ``n_nonmembers``, ``fprs``, ``n_boot``, ``ci_level`` and
    ``bootstrap`` (``"stratified"`` or ``"cluster"``). Each replicate computes one ROC for all metrics.

    Args:
        scores: (N,) attack scores, larger = member.
        is_member: (N,) bool ground truth.
        rng: numpy random generator for the bootstrap.
        fprs: FPRs at which to report the TPR.
        n_boot: number of bootstrap replicates.
        level: CI coverage.
        groups: optional (N,) group per score (e.g. target-model index) for a cluster bootstrap.

    Returns:
        The metrics dict (plain Python floats, ints, bools and lists).
    """
    scores, is_member = _check(scores, is_member)
    fprs = [_check_fpr(f) for f in fprs]
    keys = ["auc", "balanced_accuracy", *(fpr_key(f) for f in fprs)]

    def all_metrics(s: np.ndarray, m: np.ndarray) -> np.ndarray:
        fpr, tpr = roc_curve(s, m)
        at = [_tpr_at_fpr_from_roc(fpr, tpr, f) for f in fprs]
        return np.array([_auc_from_roc(fpr, tpr), _balanced_accuracy_from_roc(fpr, tpr), *at])

    point = all_metrics(scores, is_member)
    ci = _percentiles(_bootstrap_stats(scores, is_member, all_metrics, rng, n_boot, groups), level)
    n_members = int(is_member.sum())
    n_nonmembers = int(is_member.size - n_members)
    out: dict[str, float | int | bool | str | list[float]] = {
        "n_members": n_members,
        "n_nonmembers": n_nonmembers,
        "min_resolvable_fpr": min_resolvable_fpr(n_nonmembers),
        "fprs": fprs,
        "n_boot": int(n_boot),
        "ci_level": float(level),
        "bootstrap": "stratified" if groups is None else "cluster",
    }
    for j, key in enumerate(keys):
        out[key] = float(point[j])
        out[f"{key}_ci"] = [float(ci[0, j]), float(ci[1, j])]
    for f in fprs:
        out[f"{fpr_key(f)}_resolvable"] = is_fpr_resolvable(f, n_nonmembers)
    return out
