"""Scoring every attack for one target model, and pooled over leave-one-out targets (pure numpy).

Inputs are the saved logits of the audit: ``target`` ``(N, Q, K)`` and ``refs`` ``(R, N, Q, K)`` with the
references' membership ``ref_keep`` ``(R, N)``. Outputs are per-example scores (larger = member).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kr_lightning.privacy.attacks import (
    lira_offline,
    lira_online,
    logit_scaled_confidence,
    loss_attack,
    mentr_class_thresholds,
    modified_entropy_attack,
    true_class_probability,
)
from kr_lightning.privacy.design import leave_one_out
from kr_lightning.privacy.metrics import summarize
from kr_lightning.privacy.rmia import rmia_offline


def attack_scores(
    target: np.ndarray,
    refs: np.ndarray,
    ref_keep: np.ndarray,
    labels: np.ndarray,
    population: np.ndarray,
    *,
    rmia_refs: list[int],
    rmia_a: float,
    rmia_tie_break: bool = False,
) -> dict[str, np.ndarray]:
    """Every attack's ``(N,)`` scores for one target.

    Args:
        target: ``(N, Q, K)`` logits of the audited model on the pool's query views.
        refs: ``(R, N, Q, K)`` logits of the reference models.
        ref_keep: ``(R, N)`` bool, True where a reference trained on the example.
        labels: ``(N,)`` true classes.
        population: ``(N,)`` bool, the examples the target never trained on (RMIA's population Z).
        rmia_refs: Numbers of OUT references for RMIA.
        rmia_a: RMIA's offline parameter ``a``.
        rmia_tie_break: Rank RMIA's equal counts by the likelihood ratio (off: the paper's score).
    """
    phi_t, phi_r = logit_scaled_confidence(target, labels), logit_scaled_confidence(refs, labels)
    prob_t = true_class_probability(target, labels).mean(-1)
    prob_r = true_class_probability(refs, labels).mean(-1)
    thresholds = mentr_class_thresholds(refs[:, :, :1], labels, ref_keep)  # identity view
    scores = {
        "loss": loss_attack(target, labels).mean(-1),
        "mentr_classwise": modified_entropy_attack(target[:, :1], labels, thresholds)[:, 0],
        "lira_online_fixed_var": lira_online(phi_t, phi_r, ref_keep, fix_variance=True),
        "lira_offline_fixed_var": lira_offline(phi_t, phi_r, ref_keep, fix_variance=True),
    }
    # P_OUT of an audited example and of a population point alike: the first n_ref references that did not
    # train on it (the same count on both sides of the likelihood ratio)
    for n_ref in rmia_refs:
        scores[f"rmia_offline_{n_ref}ref"] = rmia_offline(
            prob_t,
            prob_r,
            prob_t[population],
            prob_r[:, population],
            rmia_a,
            ref_out_mask=~ref_keep,
            pop_out_mask=~ref_keep[:, population],
            n_ref=n_ref,
            tie_break=rmia_tie_break,
        )
    return scores


def summarize_all(
    scores: dict[str, np.ndarray],
    is_member: np.ndarray,
    rng: np.random.Generator,
    n_boot: int,
    groups: np.ndarray | None = None,
) -> dict[str, dict[str, Any]]:
    """AUC, balanced accuracy and TPR at 1 % / 0.1 % FPR with bootstrap CIs for every attack."""
    return {
        name: summarize(s, is_member, rng, fprs=(0.01, 0.001), n_boot=n_boot, groups=groups)
        for name, s in scores.items()
    }


def pooled_scores(
    all_logits: np.ndarray,
    keep: np.ndarray,
    labels: np.ndarray,
    *,
    rmia_refs: list[int],
    rmia_a: float,
    rmia_tie_break: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Each reference model in turn as the target, the others as references; scores concatenated.

    Returns:
        ``(scores, is_member, groups)``: per attack ``(M * N,)`` scores, membership and the target index of
        each score (for the cluster bootstrap).
    """
    parts: dict[str, list[np.ndarray]] = {}
    members, groups = [], []
    for i in range(len(all_logits)):
        is_member, ref_idx = leave_one_out(i, keep)
        scores = attack_scores(
            all_logits[i],
            all_logits[ref_idx],
            keep[ref_idx],
            labels,
            ~is_member,
            rmia_refs=rmia_refs,
            rmia_a=rmia_a,
            rmia_tie_break=rmia_tie_break,
        )
        for name, s in scores.items():
            parts.setdefault(name, []).append(s)
        members.append(is_member)
        groups.append(np.full(len(is_member), i))
    return {k: np.concatenate(v) for k, v in parts.items()}, np.concatenate(members), np.concatenate(groups)


def distinguishable_from_chance(summary: dict[str, Any]) -> bool:
    """True when the 95 % CI of the AUC lies above 0.5 or that of TPR at 1 % FPR lies above 1 %."""
    return summary["auc_ci"][0] > 0.5 or summary["tpr_at_fpr_0.01_ci"][0] > 0.01
