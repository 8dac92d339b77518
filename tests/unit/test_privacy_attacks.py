import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import norm

from kr_lightning.privacy.attacks import (
    lira_offline,
    lira_online,
    logit_scaled_confidence,
    loss_attack,
    mentr_class_thresholds,
    modified_entropy,
    modified_entropy_attack,
    true_class_probability,
)
from kr_lightning.privacy.design import keep_matrix, leave_one_out
from kr_lightning.privacy.metrics import auc, tpr_at_fpr
from kr_lightning.privacy.rmia import rmia_offline

# ---------------------------------------------------------------- signals


def test_logit_scaled_confidence_matches_naive_float64():
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(0, 3, (50, 5)), rng.integers(0, 5, 50)
    p = softmax(logits, axis=-1)
    p_y = p[np.arange(50), labels]
    np.testing.assert_allclose(logit_scaled_confidence(logits, labels), np.log(p_y) - np.log(1 - p_y), rtol=1e-9)


def test_logit_scaled_confidence_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4], [1e4, 0.0, -1e4], [3e38, 3e38, 0.0]], dtype=np.float32)
    phi = logit_scaled_confidence(logits, np.array([0, 1, 0]))
    assert np.isfinite(phi).all()
    np.testing.assert_allclose(phi, [1e4, -1e4, 0.0], atol=1e-6, rtol=1e-12)


def test_signals_broadcast_labels_over_models_and_queries():
    rng = np.random.default_rng(1)
    logits, labels = rng.normal(size=(3, 4, 2, 5)), rng.integers(0, 5, 4)  # (M, N, Q, K), (N,)
    phi = logit_scaled_confidence(logits, labels)
    assert phi.shape == (3, 4, 2)
    for m in range(3):
        for q in range(2):
            np.testing.assert_allclose(phi[m, :, q], logit_scaled_confidence(logits[m, :, q], labels))
    with pytest.raises(ValueError, match="axis -3"):
        logit_scaled_confidence(logits, labels[:3])
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        loss_attack(logits, labels + 5)


def test_loss_and_probability_match_cross_entropy():
    rng = np.random.default_rng(2)
    logits, labels = rng.normal(size=(20, 4)), rng.integers(0, 4, 20)
    p_y = softmax(logits, axis=-1)[np.arange(20), labels]
    np.testing.assert_allclose(loss_attack(logits, labels), np.log(p_y))
    np.testing.assert_allclose(true_class_probability(logits, labels), p_y)


def test_modified_entropy_matches_song_mittal_formula():
    rng = np.random.default_rng(3)
    logits, labels = rng.normal(0, 2, (30, 4)), rng.integers(0, 4, 30)
    p = softmax(logits, axis=-1)
    expected = np.empty(30)
    for i in range(30):
        y = labels[i]
        expected[i] = -(1 - p[i, y]) * np.log(p[i, y]) - sum(p[i, j] * np.log(1 - p[i, j]) for j in range(4) if j != y)
    np.testing.assert_allclose(modified_entropy(logits, labels), expected, rtol=1e-9)
    huge = modified_entropy(np.array([[800.0, 0.0, 0.0], [800.0, 0.0, 0.0]]), np.array([0, 1]))
    assert np.isfinite(huge).all() and huge[0] < 1e-300 and huge[1] == pytest.approx(1600.0 - np.log(2.0))


def test_mentr_class_thresholds_hand_made():
    # class 0: members have Mentr lower than non-members -> threshold at the largest member Mentr
    logits = np.array([[5.0, 0.0], [4.0, 0.0], [1.0, 0.0], [0.5, 0.0], [0.0, 5.0], [0.0, 0.0]])
    labels = np.array([0, 0, 0, 0, 1, 1])
    members = np.array([True, True, False, False, True, False])
    thresholds = mentr_class_thresholds(logits, labels, members)
    mentr = modified_entropy(logits, labels)
    assert thresholds[0] == mentr[1] and thresholds[1] == mentr[4]
    scores = modified_entropy_attack(logits, labels, thresholds)
    np.testing.assert_array_equal(scores >= 0, members)


# ---------------------------------------------------------------- membership design


def test_keep_matrix_has_exactly_half_in():
    keep = keep_matrix(8, 500, np.random.default_rng(0))
    assert keep.shape == (8, 500) and keep.dtype == bool
    assert (keep.sum(axis=0) == 4).all()
    assert 0.4 < keep.sum(axis=1).min() / 500 and keep.sum(axis=1).max() / 500 < 0.6
    np.testing.assert_array_equal(keep, keep_matrix(8, 500, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="even"):
        keep_matrix(3, 10, np.random.default_rng(0))


def test_keep_matrix_with_an_inclusion_count_per_example():
    n_in = np.array([12] * 300 + [8] * 100)  # regular images at p = 3/4, canaries at p = 1/2
    keep = keep_matrix(16, 400, np.random.default_rng(1), n_in)
    np.testing.assert_array_equal(keep.sum(axis=0), n_in)
    share = keep[:, :300].mean(axis=1)  # every model trains on about 3/4 of the regular images
    assert 0.65 < share.min() and share.max() < 0.85
    for bad in (0, 16):
        with pytest.raises(ValueError, match="n_in"):
            keep_matrix(16, 10, np.random.default_rng(0), bad)


def test_leave_one_out():
    keep = keep_matrix(4, 10, np.random.default_rng(0))
    is_member, ref_idx = leave_one_out(2, keep)
    np.testing.assert_array_equal(is_member, keep[2])
    np.testing.assert_array_equal(ref_idx, [0, 1, 3])


# ---------------------------------------------------------------- LiRA by hand


def _hand_lira(target, ref, mask, fix_variance, side):
    """Explicit loops: keep the first k refs per example (k = smallest non-zero count), then median mu per
    (n, q) and std global over all kept values of a side, or per example."""
    m_models, n_examples, n_queries = ref.shape
    side_mask = mask if side == "in" else ~mask
    k = min(c for c in side_mask.sum(axis=0) if c > 0)
    use = np.zeros_like(side_mask)
    for n in range(n_examples):
        rows = [m for m in range(m_models) if side_mask[m, n]][:k]
        use[rows, n] = True
    pooled = [[ref[m, n, q] for m in range(m_models) for n in range(n_examples) if use[m, n]] for q in range(n_queries)]
    global_sd = np.std(np.concatenate(pooled))
    mu, sd = np.empty((n_examples, n_queries)), np.empty((n_examples, n_queries))
    for n in range(n_examples):
        for q in range(n_queries):
            values = [ref[m, n, q] for m in range(m_models) if use[m, n]]
            mu[n, q] = np.median(values) if values else np.median(pooled[q])
            sd[n, q] = global_sd if fix_variance or len(values) < 2 else np.std(values)
    return mu, sd


LIRA_TARGET = np.array([[2.0, 1.5], [-1.0, 0.0], [0.5, 0.3]])  # (N=3, Q=2)
LIRA_REF = np.array(
    [
        [[3.0, 2.0], [-2.0, -1.0], [0.0, 0.5]],
        [[2.5, 2.2], [1.0, 0.5], [-0.5, 0.0]],
        [[-1.0, -0.5], [0.5, 1.5], [0.2, -0.1]],
        [[0.0, 0.1], [-1.5, -2.0], [1.0, 0.8]],
    ]
)  # (M=4, N=3, Q=2)
LIRA_IN = np.array([[True, False, False], [True, True, False], [False, True, False], [False, False, False]])


@pytest.mark.parametrize("fix_variance", [True, False])
def test_lira_matches_hand_computation(fix_variance):
    # example 2 has no IN reference (falls back to the global IN median) and 4 OUT references (truncated to 2)
    mu_in, sd_in = _hand_lira(LIRA_TARGET, LIRA_REF, LIRA_IN, fix_variance, "in")
    mu_out, sd_out = _hand_lira(LIRA_TARGET, LIRA_REF, LIRA_IN, fix_variance, "out")
    online = np.mean(norm.logpdf(LIRA_TARGET, mu_in, sd_in) - norm.logpdf(LIRA_TARGET, mu_out, sd_out), axis=1)
    offline = np.mean(norm.logcdf(LIRA_TARGET, mu_out, sd_out), axis=1)
    np.testing.assert_allclose(lira_online(LIRA_TARGET, LIRA_REF, LIRA_IN, fix_variance), online)
    np.testing.assert_allclose(lira_offline(LIRA_TARGET, LIRA_REF, LIRA_IN, fix_variance), offline)
    if fix_variance:  # the OUT spread is not the IN spread (reference plot.py bug)
        assert sd_in[0, 0] != pytest.approx(sd_out[0, 0])


def test_lira_single_example_numbers():
    # one example, one query; IN refs {2, 4}, OUT refs {0, 1}: medians 3 and 0.5, global stds 1 and 0.5
    ref = np.array([[0.0], [1.0], [2.0], [4.0]])[:, :, None]
    mask = np.array([[False], [False], [True], [True]])
    target = np.array([[2.5]])
    expected = norm.logpdf(2.5, 3.0, 1.0) - norm.logpdf(2.5, 0.5, 0.5)
    assert lira_online(target, ref, mask)[0] == pytest.approx(expected)
    assert lira_offline(target, ref, mask)[0] == pytest.approx(norm.logcdf(4.0))


# ---------------------------------------------------------------- RMIA by hand and against the naive matrix


def _naive_rmia(p_x, p_ref, p_z, p_ref_z, a, gamma, use):
    p_out_z = p_ref_z.mean(axis=0)
    ratio_z = p_z / (0.5 * ((1 + a) * p_out_z + (1 - a)))
    scores = np.empty(p_x.size)
    for i in range(p_x.size):
        outs = [p_ref[r, i] for r in range(p_ref.shape[0]) if use[r, i]]
        p_out = np.mean(outs) if outs else p_out_z.mean()
        ratio_x = p_x[i] / (0.5 * ((1 + a) * p_out + (1 - a)))
        scores[i] = np.mean([ratio_x / rz >= gamma for rz in ratio_z])  # the |X| x |Z| comparison
    return scores


def test_rmia_hand_computed():
    a = 0.3
    p_x, p_ref = np.array([0.9, 0.2]), np.array([[0.5, 0.4]])  # one reference model
    p_z, p_ref_z = np.array([0.6, 0.3, 0.85]), np.array([[0.6, 0.2, 0.4]])
    # P(x) = 0.5 * (1.3 * P_out + 0.7): 0.675 and 0.61;  P(z): 0.74, 0.48, 0.61
    r_x = np.array([0.9 / 0.675, 0.2 / 0.61])
    r_z = np.array([0.6 / 0.74, 0.3 / 0.48, 0.85 / 0.61])
    counts = np.array([(r_x[i] / r_z >= 1.0).sum() for i in range(2)])
    np.testing.assert_array_equal(counts, [2, 0])
    plain = rmia_offline(p_x, p_ref, p_z, p_ref_z, a=a)  # the default is the paper's count score
    np.testing.assert_allclose(plain, counts / 3)
    broken = rmia_offline(p_x, p_ref, p_z, p_ref_z, a=a, tie_break=True)
    np.testing.assert_allclose(broken, counts / 3 + r_x / (1 + r_x) / 6)


@pytest.mark.parametrize("n_models", [1, 2, 3, 4])
@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_rmia_searchsorted_equals_naive(n_models, gamma):
    rng = np.random.default_rng(n_models)
    p_x, p_ref = rng.random(60), rng.random((n_models, 60))
    p_z, p_ref_z = rng.random(45), rng.random((n_models, 45))
    out_mask = rng.random((n_models, 60)) < 0.5  # some examples have no OUT reference at all
    fast = rmia_offline(p_x, p_ref, p_z, p_ref_z, a=0.3, gamma=gamma, ref_out_mask=out_mask, tie_break=False)
    np.testing.assert_array_equal(fast, _naive_rmia(p_x, p_ref, p_z, p_ref_z, 0.3, gamma, out_mask))
    tied = rmia_offline(p_x, p_ref, p_z, p_ref_z, a=0.3, gamma=gamma, ref_out_mask=out_mask, tie_break=True)
    assert np.all((tied >= fast) & (tied < fast + 0.5 / 45))


def test_rmia_with_fewer_out_refs_than_requested():
    p_ref = np.array([[0.2, np.nan, np.nan], [0.4, 0.6, np.nan], [0.9, 0.8, np.nan]])  # 3, 2, 0 OUT refs
    p_x, p_z, p_ref_z = np.array([0.5, 0.5, 0.5]), np.array([0.1, 0.5, 0.9]), np.full((3, 3), 0.5)
    scores = rmia_offline(p_x, p_ref, p_z, p_ref_z, n_ref=2, tie_break=False)
    assert np.isfinite(scores).all()
    use = np.array([[True, False, False], [True, True, False], [False, True, False]])  # first 2 OUT refs
    np.testing.assert_array_equal(scores, _naive_rmia(p_x, p_ref, p_z, p_ref_z[:2], 0.3, 1.0, use))


def _first_out(out, n):
    """The first ``n`` OUT references of each column."""
    return out & (np.cumsum(out, axis=0) <= n)


def test_rmia_reference_count_applies_to_the_population_too():
    rng = np.random.default_rng(5)
    p_x, p_ref = rng.random(30), rng.random((6, 30))
    p_z, p_ref_z = rng.random(20), rng.random((6, 20))
    x_out, z_out = rng.random((6, 30)) < 0.5, rng.random((6, 20)) < 0.5
    z_out[:, 0] = False  # a population point without any OUT reference: the population's mean P_OUT
    for n_ref in (1, 2):
        scores = rmia_offline(p_x, p_ref, p_z, p_ref_z, ref_out_mask=x_out, pop_out_mask=z_out, n_ref=n_ref)
        use_z = _first_out(z_out, n_ref)
        p_out_z = np.array([p_ref_z[use_z[:, j], j].mean() if use_z[:, j].any() else np.nan for j in range(20)])
        p_out_z[0] = np.nanmean(p_out_z)
        ratio_z = p_z / (0.5 * (1.3 * p_out_z + 0.7))
        use_x = _first_out(x_out, n_ref)
        expected = []
        for i in range(30):
            p_out = p_ref[use_x[:, i], i].mean() if use_x[:, i].any() else np.nanmean(p_out_z[1:])
            expected.append(np.mean(p_x[i] / (0.5 * (1.3 * p_out + 0.7)) / ratio_z >= 1.0))
        np.testing.assert_array_equal(scores, expected)
    everyone = rmia_offline(p_x, p_ref, p_z, p_ref_z, ref_out_mask=x_out, pop_out_mask=z_out, n_ref=6)
    assert not np.array_equal(
        everyone, rmia_offline(p_x, p_ref, p_z, p_ref_z, ref_out_mask=x_out, pop_out_mask=z_out, n_ref=1)
    )


# ---------------------------------------------------------------- sign convention on simulated models


def _simulate(shift, n_models=8, n_examples=2000, n_pop=1000, n_queries=2, k=3, seed=0):
    """Logits whose true-class margin is a per-example difficulty plus ``shift`` when the model trained on it."""
    rng = np.random.default_rng(seed)
    keep = keep_matrix(n_models, n_examples, rng)

    def logits(inside):
        labels = rng.integers(0, k, inside.shape[1])
        margin = rng.normal(0, 1, inside.shape[1]) + shift * inside
        margin = margin[..., None] + rng.normal(0, 0.3, inside.shape + (n_queries,))
        z = rng.normal(0, 0.3, inside.shape + (n_queries, k))
        return z + np.eye(k)[labels][:, None, :] * margin[..., None], labels

    return keep, *logits(keep), *logits(np.zeros((n_models, n_pop), bool))


def _all_attack_scores(keep, logits, labels, pop_logits, pop_labels):
    is_member, ref = leave_one_out(0, keep)
    phi = logit_scaled_confidence(logits, labels)
    prob = true_class_probability(logits, labels).mean(-1)
    pop_prob = true_class_probability(pop_logits, pop_labels).mean(-1)
    thresholds = mentr_class_thresholds(logits[ref], labels, keep[ref])
    scores = {
        "loss": loss_attack(logits[0], labels).mean(-1),
        "mentr": modified_entropy_attack(logits[0], labels).mean(-1),
        "mentr_classwise": modified_entropy_attack(logits[0], labels, thresholds).mean(-1),
        "lira_online": lira_online(phi[0], phi[ref], keep[ref]),
        "lira_online_per_example": lira_online(phi[0], phi[ref], keep[ref], fix_variance=False),
        "lira_offline": lira_offline(phi[0], phi[ref], keep[ref]),
        "lira_offline_per_example": lira_offline(phi[0], phi[ref], keep[ref], fix_variance=False),
    }
    for n_ref in (1, 2, 4):
        scores[f"rmia_{n_ref}"] = rmia_offline(
            prob[0], prob[ref], pop_prob[0], pop_prob[ref], ref_out_mask=~keep[ref], n_ref=n_ref
        )
    return scores, is_member


def test_every_attack_scores_members_higher_on_an_overfit_model():
    scores, is_member = _all_attack_scores(*_simulate(shift=4.0))
    for name, s in scores.items():
        assert np.isfinite(s).all(), name
        assert auc(s, is_member) > 0.95, name
        assert tpr_at_fpr(s, is_member, 0.01) > 0.3, name


def test_every_attack_is_at_chance_without_membership_signal():
    # Leave-one-out: members have one IN reference fewer than non-members. Without equal reference counts
    # per side, online LiRA gave AUC 0.45 (fixed) / 0.38 (per-example variance) here, offline 0.52.
    scores, is_member = _all_attack_scores(*_simulate(shift=0.0, n_examples=6000, seed=1))
    for name, s in scores.items():
        assert np.isfinite(s).all(), name
        assert auc(s, is_member) == pytest.approx(0.5, abs=0.03), name  # sd of AUC here ~ 0.0075


def test_lira_accepts_a_missing_query_axis_and_rejects_bad_shapes():
    with_axis = lira_online(LIRA_TARGET[:, :1], LIRA_REF[..., :1], LIRA_IN)
    np.testing.assert_allclose(lira_online(LIRA_TARGET[:, 0], LIRA_REF[..., 0], LIRA_IN), with_axis)
    with pytest.raises(ValueError, match=r"ref_in_mask must have shape \(M, N\)"):
        lira_online(LIRA_TARGET, LIRA_REF, LIRA_IN[:, :2])
    with pytest.raises(ValueError, match="finite"):
        lira_offline(np.full((3, 2), np.nan), LIRA_REF)
