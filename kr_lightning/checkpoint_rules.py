"""Which epoch a run keeps: checkpoint selection rules, and judging them on val alone by split halves.

Every rule reads the per-epoch val probabilities that :class:`kr_lightning.callbacks.ValPredictions` saves:

- ``acc``: the highest val accuracy, first epoch to reach it (what ``ModelCheckpoint(monitor="val/acc",
  mode="max")`` keeps, the recipes' rule);
- ``loss``: the lowest val cross-entropy, first epoch to reach it;
- ``acc_loss``: the highest val accuracy, ties broken by the lowest val cross-entropy;
- ``last``: the last epoch.

A rule cannot be judged by the val accuracy of the epoch it picks on the same images (``acc`` wins that by
construction). :func:`split_half` picks each rule's epoch on one random, class-stratified half of val and scores
the epoch on the other half, both ways round, over many splits: the mean held-out accuracy estimates what each rule
delivers on unseen images of the same distribution, without reading the test split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RULES: tuple[str, ...] = ("acc", "loss", "acc_loss", "last")


def epoch_scores(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and mean cross-entropy of every epoch: ``probs`` ``(E, N, K)``, ``labels`` ``(N,)`` -> two ``(E,)``."""
    accuracy = (probs.argmax(-1) == labels).mean(-1)
    picked = np.take_along_axis(probs, labels[None, :, None], axis=-1)[..., 0]
    loss = -np.log(np.clip(picked, 1e-12, None)).mean(-1)
    return accuracy, loss


def pick_epoch(probs: np.ndarray, labels: np.ndarray, rule: str) -> int:
    """Index (into the first axis of ``probs``) of the epoch ``rule`` keeps; the earliest wins a full tie."""
    if rule not in RULES:
        raise ValueError(f"unknown checkpoint rule {rule!r}; expected one of {', '.join(RULES)}")
    if rule == "last":
        return len(probs) - 1
    accuracy, loss = epoch_scores(probs, labels)
    if rule == "acc":
        return int(np.argmax(accuracy))
    if rule == "loss":
        return int(np.argmin(loss))
    return int(np.lexsort((np.arange(len(loss)), loss, -accuracy))[0])


def stratified_halves(labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A random split of ``range(len(labels))`` into two halves with each class divided as evenly as possible."""
    first, second = [], []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        cut = (len(members) + rng.integers(0, 2)) // 2  # odd classes give their extra image to either half
        first.append(members[:cut])
        second.append(members[cut:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def split_half(
    probs: np.ndarray,
    labels: np.ndarray,
    rules: Sequence[str] = RULES,
    n_splits: int = 500,
    rng: np.random.Generator | None = None,
) -> dict[str, np.ndarray]:
    """Held-out accuracy of each rule: ``{rule: (2 * n_splits,)}``, one value per split and direction.

    Each split halves val (stratified); a rule picks its epoch on one half and is scored on the other, then the
    halves swap roles. Every rule sees the same splits, so differences between rules are paired.
    """
    if probs.ndim != 3 or probs.shape[1] != len(labels):
        raise ValueError(f"probs must be (epochs, {len(labels)} images, classes), got {probs.shape}")
    rng = rng if rng is not None else np.random.default_rng(0)
    held_out: dict[str, list[float]] = {rule: [] for rule in rules}
    for _ in range(n_splits):
        halves = stratified_halves(labels, rng)
        for pick_on, score_on in (halves, halves[::-1]):
            for rule in rules:
                epoch = pick_epoch(probs[:, pick_on], labels[pick_on], rule)
                held_out[rule].append(float((probs[epoch, score_on].argmax(-1) == labels[score_on]).mean()))
    return {rule: np.asarray(values) for rule, values in held_out.items()}
