"""Checkpoint selection rules and their split-half judgement on val (pure functions over saved probabilities)."""

import numpy as np
import pytest

from kr_lightning.checkpoint_rules import RULES, epoch_scores, pick_epoch, split_half, stratified_halves


def probs_of(correct: np.ndarray, confidence: float | np.ndarray) -> np.ndarray:
    """Two-class probabilities ``(E, N, 2)`` for labels all 0: ``correct[e, i]`` says which class wins."""
    confidence = np.broadcast_to(confidence, correct.shape)
    p0 = np.where(correct, confidence, 1 - confidence)
    return np.stack([p0, 1 - p0], axis=-1)


def test_each_rule_keeps_its_epoch_and_the_earliest_wins_a_tie():
    labels = np.zeros(4, dtype=int)
    correct = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=bool)
    probs = probs_of(correct, np.array([[0.9], [0.6], [0.8], [0.99]]))
    accuracy, loss = epoch_scores(probs, labels)
    np.testing.assert_allclose(accuracy, [0.5, 0.75, 0.75, 0.25])
    assert pick_epoch(probs, labels, "acc") == 1  # first of the two best accuracies
    assert pick_epoch(probs, labels, "acc_loss") == 2  # same accuracy, lower loss
    assert pick_epoch(probs, labels, "loss") == int(np.argmin(loss)) == 2
    assert pick_epoch(probs, labels, "last") == 3
    with pytest.raises(ValueError, match="unknown checkpoint rule 'best'.*acc, loss"):
        pick_epoch(probs, labels, "best")


def test_halves_split_every_class_evenly_and_cover_val_once():
    labels = np.array([0] * 7 + [1] * 4 + [2] * 3)
    rng = np.random.default_rng(1)
    for _ in range(20):
        first, second = stratified_halves(labels, rng)
        assert sorted(np.concatenate([first, second]).tolist()) == list(range(len(labels)))
        for cls in range(3):
            assert abs(int((labels[first] == cls).sum()) - int((labels[second] == cls).sum())) <= 1


def test_split_half_scores_a_rule_on_images_it_did_not_pick_on():
    """Epoch 1 is right on a random half of the images, epoch 0 on the other: in sample, the epoch ``acc`` picks
    always scores above 0.5; on the other half it scores below (the half where it was lucky is not there)."""
    rng = np.random.default_rng(0)
    labels = np.zeros(40, dtype=int)
    lucky = rng.permutation(40) < 20
    probs = probs_of(np.stack([~lucky, lucky, np.ones(40, bool)]), 0.9)
    probs[2] = probs_of(np.ones((1, 40), bool), 0.55)[0]  # epoch 2: right on every image, low confidence
    held_out = split_half(probs, labels, rules=RULES, n_splits=50, rng=np.random.default_rng(3))
    assert all(len(values) == 100 for values in held_out.values())
    assert held_out["acc"].mean() == held_out["last"].mean() == 1.0  # both keep epoch 2, right everywhere
    probs[2] = probs_of(np.zeros((1, 40), bool), 0.9)[0]  # now epoch 2 is wrong everywhere
    held_out = split_half(probs, labels, rules=("acc", "last"), n_splits=200, rng=np.random.default_rng(3))
    assert held_out["last"].max() == 0.0
    assert 0.3 < held_out["acc"].mean() < 0.5


def test_rules_see_the_same_splits():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 30)
    probs = rng.dirichlet([1, 1], size=(6, 30))
    a = split_half(probs, labels, rules=("acc", "loss"), n_splits=30, rng=np.random.default_rng(9))
    b = split_half(probs, labels, rules=("loss", "acc"), n_splits=30, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(a["acc"], b["acc"])
    np.testing.assert_array_equal(a["loss"], b["loss"])
    with pytest.raises(ValueError, match=r"probs must be \(epochs, 30 images"):
        split_half(probs[:, :10], labels)


def test_the_tie_break_score_orders_by_accuracy_first_then_by_lower_loss():
    from kr_lightning.callbacks.tie_break import tie_broken

    n = 78
    losses = [0.0, 0.01, 0.3, 1.0, 7.5, 1e6]
    for k in range(n):
        worst_at_k1 = tie_broken((k + 1) / n, losses[-1], n)
        assert all(tie_broken(k / n, loss, n) < worst_at_k1 for loss in losses)  # never overturns one image
        scores = [tie_broken(k / n, loss, n) for loss in losses]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    assert tie_broken(0.9, 0.25, n) > tie_broken(0.9, 0.25002, n)  # float32-sized loss gaps still ordered
