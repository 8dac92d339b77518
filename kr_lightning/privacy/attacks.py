"""Membership-inference attack scores from saved logits: LOSS, modified entropy, LiRA (pure numpy/scipy).

RMIA lives in :mod:`kr_lightning.privacy.rmia`, the keep-matrix design in :mod:`kr_lightning.privacy.design`.

One sign convention throughout: a **larger score means "more likely a member"**. Array conventions:

* ``logits``: float (..., N, Q, K), e.g. (M, N, Q, K) for M models, N audited examples, Q augmented queries
  and K classes; (N, K) without a query axis is also accepted. Computations run in float64.
* ``labels``: int (N,) in [0, K), matched to the example axis N.
* ``keep`` / ``ref_in_mask``: bool (M, N), True where model m trained on example n.
* ``phi``: the LiRA statistic of :func:`logit_scaled_confidence`, (N, Q) for a target, (M, N, Q) for references.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp
from scipy.stats import norm


def _align(logits: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Return float64 logits and labels broadcast to ``logits.shape[:-1]``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ValueError(f"logits must have shape (..., K) with K >= 2 classes, got {z.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[-1]):
        raise ValueError(f"labels must lie in [0, {z.shape[-1]}), got range [{y.min()}, {y.max()}]")
    if y.ndim == 1 and z.ndim >= 3:  # labels (N,) for logits (..., N, Q, K)
        if y.shape[0] != z.shape[-3]:
            raise ValueError(f"labels (N,) must match axis -3 of logits (..., N, Q, K), got {y.shape} and {z.shape}")
        y = y[:, None]
    try:
        return z, np.broadcast_to(y, z.shape[:-1])
    except ValueError as err:
        raise ValueError(f"labels {y.shape} do not broadcast to logits.shape[:-1] = {z.shape[:-1]}") from err


def _drop_class(z: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Copy of ``z`` (..., K) with the class ``index`` (...,) set to -inf."""
    out = z.copy()
    np.put_along_axis(out, index[..., None], -np.inf, axis=-1)
    return out


def logit_scaled_confidence(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """LiRA statistic phi = log p_y - log(1 - p_y) = z_y - logsumexp_{j != y} z_j, stable in float64.

    Args:
        logits: (..., N, Q, K) or (N, K) logits.
        labels: (N,) true labels.

    Returns:
        phi with shape ``logits.shape[:-1]``; larger = more confident in the true label.
    """
    z, y = _align(logits, labels)
    z_y = np.take_along_axis(z, y[..., None], axis=-1)[..., 0]
    return z_y - logsumexp(_drop_class(z, y), axis=-1)


def _log_prob_true(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.take_along_axis(z, y[..., None], axis=-1)[..., 0] - logsumexp(z, axis=-1)


def loss_attack(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """LOSS attack (Yeom et al. 2018): score = -cross-entropy = log p_y, shape ``logits.shape[:-1]``.

    Average over the query axis yourself (``.mean(-1)``) to get one score per example.
    """
    return _log_prob_true(*_align(logits, labels))


def true_class_probability(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Softmax probability of the true label, shape ``logits.shape[:-1]`` (the RMIA signal P(x|theta))."""
    return np.exp(_log_prob_true(*_align(logits, labels)))


def modified_entropy(logits: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """Modified entropy Mentr = -(1 - p_y) log p_y - sum_{j != y} p_j log(1 - p_j) (Song & Mittal 2021).

    ``log(1 - p_j)`` of the top class is computed exactly as ``logsumexp_{k != j} z_k - logsumexp z``, so
    confident predictions keep a finite, accurate value. Mentr >= 0 and is small for members.

    Returns:
        Mentr with shape ``logits.shape[:-1]``.
    """
    z, y = _align(logits, labels)
    lse = logsumexp(z, axis=-1, keepdims=True)
    log_p = z - lse
    p = np.exp(log_p)
    log_1mp = np.log1p(-np.minimum(p, 0.5))  # exact wherever p <= 0.5, i.e. everywhere except the top class
    top = np.argmax(z, axis=-1)
    log_1m_top = logsumexp(_drop_class(z, top), axis=-1, keepdims=True) - lse
    np.put_along_axis(log_1mp, top[..., None], log_1m_top, axis=-1)
    terms = -p * log_1mp
    y_term = -np.exp(np.take_along_axis(log_1mp, y[..., None], -1)) * np.take_along_axis(log_p, y[..., None], -1)
    np.put_along_axis(terms, y[..., None], y_term, axis=-1)
    return terms.sum(axis=-1)


def _balanced_threshold(m_in: np.ndarray, m_out: np.ndarray) -> float:
    """Mentr threshold tau (an observed value) maximising (TPR + TNR) / 2 for "member iff Mentr <= tau"."""
    candidates = np.unique(np.concatenate([m_in, m_out]))
    tpr = np.searchsorted(np.sort(m_in), candidates, side="right") / m_in.size
    tnr = 1.0 - np.searchsorted(np.sort(m_out), candidates, side="right") / m_out.size
    return float(candidates[np.argmax(tpr + tnr)])  # smallest maximiser


def mentr_class_thresholds(logits: ArrayLike, labels: ArrayLike, is_member: ArrayLike) -> np.ndarray:
    """Per-class Mentr thresholds calibrated on shadow (reference) models, as Song & Mittal's ``_thre_setting``.

    For each class c, tau_c is the observed Mentr value maximising the balanced accuracy of "member iff
    Mentr <= tau_c" over the shadow examples labelled c; every (model, example, query) is one sample. A class
    without both IN and OUT shadow samples gets the threshold fitted on all classes together.

    Args:
        logits: shadow logits (..., N, Q, K), e.g. (M, N, Q, K), or (N, K).
        labels: (N,) true labels.
        is_member: bool ``logits.shape[:-2]`` (e.g. (M, N) = ``keep[ref_idx]``), or (N,) for (N, K) logits.

    Returns:
        (K,) thresholds on the Mentr scale, for :func:`modified_entropy_attack`.
    """
    z, y = _align(logits, labels)
    mentr = modified_entropy(z, y)
    member = np.asarray(is_member, dtype=bool)
    member = member[..., None] if z.ndim >= 3 else member
    try:
        member = np.broadcast_to(member, mentr.shape)
    except ValueError as err:
        raise ValueError(f"is_member must have shape logits.shape[:-2] = {z.shape[:-2]}, got {member.shape}") from err
    if member.all() or not member.any():
        raise ValueError("calibration needs both member and non-member shadow samples")
    fallback = _balanced_threshold(mentr[member], mentr[~member])
    thresholds = np.full(z.shape[-1], fallback)
    for c in range(thresholds.size):
        m_in, m_out = mentr[member & (y == c)], mentr[~member & (y == c)]
        if m_in.size and m_out.size:
            thresholds[c] = _balanced_threshold(m_in, m_out)
    return thresholds


def modified_entropy_attack(logits: ArrayLike, labels: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """Modified-entropy attack (Song & Mittal 2021) with optional class-wise thresholds.

    The score is ``thresholds[y] - Mentr``: 0 sits exactly at each class's threshold, and "score >= 0" is
    the class-wise member decision of Song & Mittal (member iff Mentr <= tau_y). Sweeping one global
    threshold over this score therefore shifts all class thresholds together. Without ``thresholds`` the
    score is ``-Mentr`` (a single global threshold).

    Args:
        logits: (..., N, Q, K) or (N, K) logits of the attacked model(s).
        labels: (N,) true labels.
        thresholds: (K,) Mentr thresholds from :func:`mentr_class_thresholds`, or None.

    Returns:
        Scores with shape ``logits.shape[:-1]``; average over queries with ``.mean(-1)``.
    """
    z, y = _align(logits, labels)
    mentr = modified_entropy(z, y)
    return -mentr if thresholds is None else np.asarray(thresholds, dtype=np.float64)[y] - mentr


def _lira_inputs(
    target_phi: ArrayLike, ref_phi: ArrayLike, ref_in_mask: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = np.asarray(target_phi, dtype=np.float64)
    r = np.asarray(ref_phi, dtype=np.float64)
    if t.ndim == 1:  # no query axis
        t, r = t[:, None], r[..., None]
    if t.ndim != 2 or r.ndim != 3 or r.shape[1:] != t.shape:
        raise ValueError(f"expected target_phi (N, Q) and ref_phi (M, N, Q), got {t.shape} and {r.shape}")
    mask = np.zeros(r.shape[:2], bool) if ref_in_mask is None else np.asarray(ref_in_mask, dtype=bool)
    if mask.shape != r.shape[:2]:
        raise ValueError(f"ref_in_mask must have shape (M, N) = {r.shape[:2]}, got {mask.shape}")
    if not (np.isfinite(t).all() and np.isfinite(r).all()):
        raise ValueError("target_phi and ref_phi must be finite")
    return t, r, mask


def _gaussian_fit(ref_phi: np.ndarray, use: np.ndarray, fix_variance: bool) -> tuple[np.ndarray, np.ndarray]:
    """Median mu (N, Q) and std sigma (N, Q) of ``ref_phi`` (M, N, Q) over the references where ``use`` (M, N).

    Equal counts: every example keeps only its first k used references (row order), k = the smallest
    non-zero count over examples, as the reference ``plot.py`` truncates to ``in_size`` / ``out_size``. In a
    leave-one-out design a member has M/2 - 1 IN and M/2 OUT references and a non-member the reverse;
    without truncation the smaller side's noisier fit biases the scores by membership even when there is
    no signal (AUC 0.38 instead of 0.5 for per-example online LiRA with M = 8).

    The global std is ``np.std`` of all kept values (examples, models and queries pooled), as in
    ``plot.py``. Fallbacks: examples with no reference get the global median (per query); per-example stds
    from fewer than 2 references, or equal to 0, are replaced by the global std.
    """
    count = use.sum(axis=0)
    if count.any():
        use = use & (np.cumsum(use, axis=0) <= count[count > 0].min())
        count = use.sum(axis=0)
    if count.sum() < 2:
        raise ValueError(f"need at least 2 reference values to fit a Gaussian, got {int(count.sum())}")
    data = np.where(use[..., None], ref_phi, np.nan)
    global_mu = np.nanmedian(data, axis=(0, 1))
    global_sd = float(np.nanstd(data))
    if global_sd == 0.0:
        raise ValueError("reference phi values have zero spread; cannot fit a Gaussian")
    mu = np.broadcast_to(global_mu, data.shape[1:]).copy()
    has = count > 0  # statistics only over examples with references (no all-NaN slices)
    mu[has] = np.nanmedian(data[:, has], axis=0)
    sd = np.full_like(mu, global_sd)
    if fix_variance:
        return mu, sd
    enough = count >= 2
    per_example = np.nanstd(data[:, enough], axis=0)
    sd[enough] = np.where(per_example > 0, per_example, global_sd)
    return mu, sd


def lira_online(
    target_phi: ArrayLike, ref_phi: ArrayLike, ref_in_mask: ArrayLike, fix_variance: bool = True
) -> np.ndarray:
    """Online LiRA (Carlini et al. 2022): mean over queries of log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out).

    mu is the per-example, per-query median over the IN (resp. OUT) references. With ``fix_variance`` s_in
    and s_out are two global stds, fitted separately on all IN and all OUT values (the reference
    ``plot.py`` wrongly uses the IN spread for OUT); otherwise they are per-example, per-query stds.
    Examples with no IN (or OUT) reference use the global median of that side; see :func:`_gaussian_fit`.

    Args:
        target_phi: (N, Q) phi of the target model (or (N,)).
        ref_phi: (M, N, Q) phi of the reference models (or (M, N)).
        ref_in_mask: (M, N) bool, True where reference m trained on example n.
        fix_variance: global (True, best below ~64 references) or per-example (False) variances.

    Returns:
        (N,) scores; larger = member.
    """
    t, r, mask = _lira_inputs(target_phi, ref_phi, ref_in_mask)
    mu_in, sd_in = _gaussian_fit(r, mask, fix_variance)
    mu_out, sd_out = _gaussian_fit(r, ~mask, fix_variance)
    return (norm.logpdf(t, mu_in, sd_in) - norm.logpdf(t, mu_out, sd_out)).mean(axis=1)


def lira_offline(
    target_phi: ArrayLike, ref_phi: ArrayLike, ref_in_mask: ArrayLike | None = None, fix_variance: bool = True
) -> np.ndarray:
    """Offline LiRA (Carlini et al. 2022): one-sided test against the OUT Gaussian only.

    Score = mean over queries of ``log Phi((phi - mu_out) / s_out)`` (``scipy.stats.norm.logcdf``): the
    log-probability that an OUT model gives a phi below the observed one, so phi high relative to the OUT
    distribution = larger score = member. (The reference ``plot.py`` uses the two-sided ``-logpdf``.)
    mu_out / s_out are fitted as in :func:`lira_online`, on the references with ``ref_in_mask`` False.

    Args:
        target_phi: (N, Q) phi of the target model (or (N,)).
        ref_phi: (M, N, Q) phi of the reference models (or (M, N)).
        ref_in_mask: (M, N) bool, True where reference m trained on n (ignored); None = all references OUT.
        fix_variance: global (True) or per-example (False) variance.

    Returns:
        (N,) scores <= 0; larger = member.
    """
    t, r, mask = _lira_inputs(target_phi, ref_phi, ref_in_mask)
    mu_out, sd_out = _gaussian_fit(r, ~mask, fix_variance)
    return norm.logcdf(t, mu_out, sd_out).mean(axis=1)
