"""Empirical lower bound on a training algorithm's epsilon from an attack's member / non-member scores.

An (epsilon, delta)-DP algorithm bounds every membership test: ``TPR <= e^epsilon FPR + delta`` and
``1 - FPR <= e^epsilon (1 - TPR) + delta`` (Kairouz et al. 2015). With Clopper-Pearson bounds on TPR and FPR
(each one-sided at level ``alpha``), ``ln((TPR_low - delta) / FPR_high)`` and ``ln((1 - FPR_high - delta) /
(1 - TPR_low))`` are lower bounds on epsilon at one threshold (Jagielski et al. 2020, Nasr et al. 2021). This
module takes the largest over every threshold of the scores: the threshold is chosen on the same scores, so the
result is optimistic (no correction for the choice) and is reported as an indication, not a certificate.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import beta

from kr_lightning.privacy.metrics import roc_curve


def clopper_pearson(successes: ArrayLike, trials: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson ``(low, high)`` bounds of a binomial proportion, each at level ``1 - alpha``."""
    k = np.asarray(successes, dtype=np.float64)
    low = np.where(k > 0, beta.ppf(alpha, np.maximum(k, 1e-12), trials - k + 1), 0.0)
    high = np.where(k < trials, beta.ppf(1 - alpha, k + 1, np.maximum(trials - k, 1e-12)), 1.0)
    return low, high


def empirical_epsilon(scores: ArrayLike, is_member: ArrayLike, delta: float = 0.0, alpha: float = 0.05) -> float:
    """The largest epsilon lower bound over the thresholds of ``scores`` (larger score = member), at least 0."""
    is_member = np.asarray(is_member, dtype=bool)
    fpr, tpr = roc_curve(scores, is_member)
    n_in, n_out = int(is_member.sum()), int((~is_member).sum())
    tpr_low, _ = clopper_pearson(np.rint(tpr * n_in), n_in, alpha)
    _, fpr_high = clopper_pearson(np.rint(fpr * n_out), n_out, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        upper_tail = np.log((tpr_low - delta) / fpr_high)
        lower_tail = np.log((1 - fpr_high - delta) / (1 - tpr_low))
    bounds = np.concatenate([upper_tail, lower_tail])
    bounds = bounds[np.isfinite(bounds)]
    return float(max(0.0, bounds.max())) if bounds.size else 0.0
