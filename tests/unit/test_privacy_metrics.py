import json

import numpy as np
import pytest

from kr_lightning.privacy.metrics import (
    auc,
    balanced_accuracy,
    bootstrap_ci,
    fpr_key,
    is_fpr_resolvable,
    min_resolvable_fpr,
    roc_curve,
    summarize,
    tpr_at_fpr,
)

# Hand-made example: ranked by score the truth reads M N M M N N.
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
MEMBERS = np.array([True, False, True, True, False, False])


def test_roc_curve_hand_made():
    fpr, tpr = roc_curve(SCORES, MEMBERS)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 1 / 3, 2 / 3, 1, 1, 1])


@pytest.mark.parametrize("seed", [0, 1])
def test_roc_curve_and_auc_match_brute_force_with_ties(seed):
    # independent of scikit-learn (which roc_curve and auc now call): one threshold per distinct score, and AUC as
    # the Mann-Whitney fraction of member / non-member pairs won, ties counting 1/2
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 7, 300).astype(float)  # many ties
    members = rng.random(300) < 0.4
    thresholds = np.unique(scores)[::-1]
    ref_tpr = np.r_[0.0, [(scores[members] >= t).mean() for t in thresholds]]
    ref_fpr = np.r_[0.0, [(scores[~members] >= t).mean() for t in thresholds]]
    fpr, tpr = roc_curve(scores, members)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    diff = scores[members][:, None] - scores[~members][None, :]
    assert auc(scores, members) == pytest.approx((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_ties_are_never_split():
    scores, members = np.array([1.0, 1.0, 0.0, 0.0]), np.array([True, False, True, False])
    assert tpr_at_fpr(scores, members, 0.4) == 0.0  # admitting the tied member also admits the non-member
    assert tpr_at_fpr(scores, members, 0.5) == 0.5
    assert auc(scores, members) == pytest.approx(0.5)


def test_tpr_at_fpr_hand_made():
    assert tpr_at_fpr(SCORES, MEMBERS, 0.0) == pytest.approx(1 / 3)
    assert tpr_at_fpr(SCORES, MEMBERS, 0.3) == pytest.approx(1 / 3)
    assert tpr_at_fpr(SCORES, MEMBERS, 1 / 3) == pytest.approx(1.0)
    assert tpr_at_fpr(SCORES, MEMBERS, 1.0) == 1.0


def test_balanced_accuracy_and_auc_hand_made():
    assert balanced_accuracy(SCORES, MEMBERS) == pytest.approx((1 + 2 / 3) / 2)
    # member-vs-non-member pairs won: 3 + 2 + 2 = 7 of 9
    assert auc(SCORES, MEMBERS) == pytest.approx(7 / 9)


def test_infinite_scores_are_ranked():
    scores = np.array([np.inf, 1.0, -np.inf, 0.0])
    members = np.array([True, True, False, False])
    assert auc(scores, members) == 1.0
    assert tpr_at_fpr(scores, members, 0.0) == 1.0


def test_auc_one_on_separable_and_half_on_random():
    rng = np.random.default_rng(0)
    members = np.arange(4000) < 2000
    separable = np.where(members, 1.0, 0.0) + rng.random(4000) * 0.5
    assert auc(separable, members) == 1.0
    assert balanced_accuracy(separable, members) == 1.0
    assert tpr_at_fpr(separable, members, 0.001) == 1.0
    random = rng.normal(size=4000)
    assert auc(random, members) == pytest.approx(0.5, abs=0.04)  # sd ~ 0.009
    assert auc(-separable, members) == 0.0  # the sign matters


def test_resolvability():
    assert min_resolvable_fpr(250) == pytest.approx(0.004)
    assert not is_fpr_resolvable(0.001, 250)
    assert is_fpr_resolvable(0.01, 250)
    assert is_fpr_resolvable(0.001, 1000)  # exactly 1 / n counts despite rounding
    assert is_fpr_resolvable(0.07, 100)
    assert not is_fpr_resolvable(0.0, 10**6)
    assert fpr_key(0.01) == "tpr_at_fpr_0.01" and fpr_key(1e-3) == "tpr_at_fpr_0.001"


def test_input_validation():
    with pytest.raises(ValueError, match="at least one member and one non-member"):
        auc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="equal length"):
        auc([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="NaN"):
        auc([np.nan, 0.2], [True, False])
    with pytest.raises(ValueError, match=r"fpr must lie in \[0, 1\]"):
        tpr_at_fpr(SCORES, MEMBERS, 1.5)


def _noisy(n, rng):
    members = np.arange(n) < n // 2
    return members + rng.normal(size=n), members


def test_bootstrap_ci_contains_estimate_and_shrinks():
    rng = np.random.default_rng(0)
    widths = []
    for n in (200, 3000):
        scores, members = _noisy(n, rng)
        low, high = bootstrap_ci(scores, members, auc, rng, n_boot=200)
        assert low <= auc(scores, members) <= high
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]  # width ~ 1 / sqrt(n): ratio ~ 0.26


def test_bootstrap_ci_is_reproducible_and_supports_groups():
    scores, members = _noisy(400, np.random.default_rng(1))
    groups = np.arange(400) % 8  # each group holds members and non-members
    a = bootstrap_ci(scores, members, auc, np.random.default_rng(5), n_boot=100, groups=groups)
    b = bootstrap_ci(scores, members, auc, np.random.default_rng(5), n_boot=100, groups=groups)
    assert a == b and a[0] <= auc(scores, members) <= a[1]
    with pytest.raises(ValueError, match="at least 2 groups"):
        bootstrap_ci(scores, members, auc, np.random.default_rng(5), groups=np.zeros(400))


def test_summarize_is_json_serialisable_with_flags():
    scores, members = _noisy(1000, np.random.default_rng(2))  # 500 non-members
    report = summarize(scores, members, np.random.default_rng(3), fprs=(0.01, 0.001), n_boot=50)
    json.dumps(report, allow_nan=False)
    assert report["n_members"] == 500 and report["n_nonmembers"] == 500
    assert report["min_resolvable_fpr"] == pytest.approx(0.002)
    assert report["tpr_at_fpr_0.01_resolvable"] is True
    assert report["tpr_at_fpr_0.001_resolvable"] is False
    for key in ("auc", "balanced_accuracy", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001"):
        low, high = report[f"{key}_ci"]
        assert low <= report[key] <= high
    assert report["auc"] == pytest.approx(auc(scores, members))
    assert report["tpr_at_fpr_0.01"] == pytest.approx(tpr_at_fpr(scores, members, 0.01))


def test_summarize_cluster_bootstrap_over_targets():
    scores, members = _noisy(600, np.random.default_rng(4))
    report = summarize(scores, members, np.random.default_rng(5), n_boot=50, groups=np.arange(600) % 6)
    assert report["bootstrap"] == "cluster"
    assert report["auc_ci"][0] <= report["auc"] <= report["auc_ci"][1]


# ---------------------------------------------------------------- empirical epsilon (Clopper-Pearson)


def test_empirical_epsilon_recovers_randomized_response():
    """Randomized response at epsilon = 1 answers 'member' with probability e / (1 + e) for members."""
    from kr_lightning.privacy.epsilon import empirical_epsilon

    rng = np.random.default_rng(0)
    n = 20_000
    p = np.e / (1 + np.e)
    member = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    scores = np.r_[rng.random(n) < p, rng.random(n) < 1 - p].astype(float)
    eps = empirical_epsilon(scores, member)
    assert 0.9 < eps <= 1.0


def test_empirical_epsilon_is_zero_at_chance_and_bounded_by_the_sample_size():
    from kr_lightning.privacy.epsilon import clopper_pearson, empirical_epsilon

    rng = np.random.default_rng(1)
    member = np.r_[np.ones(500, bool), np.zeros(500, bool)]
    assert empirical_epsilon(rng.normal(size=1000), member) < 0.35
    perfect = np.r_[np.ones(500), np.zeros(500)]
    low, high = clopper_pearson([500, 0], 500, 0.05)
    assert empirical_epsilon(perfect, member) == pytest.approx(np.log(low[0] / high[1]))  # ~ln(0.994 / 0.006)
    assert 5.0 < empirical_epsilon(perfect, member) < 5.2
