"""Classification metrics from confusion matrices (equal to scikit-learn) and the resampling primitives."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from fairser.metrics import (
    METRICS,
    accuracy,
    accuracy_from_confusion,
    bootstrap_confusion,
    cluster_confusion,
    confusion_matrices,
    confusion_matrix,
    encode_labels,
    macro_f1,
    macro_f1_from_confusion,
    percentile_ci,
    permutation_confusion,
    permutation_p_value,
    uar,
    uar_from_confusion,
    weighted_f1,
    weighted_f1_from_confusion,
)

LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]


def _random_case(seed: int):
    """Random predictions; y_true often misses some classes, y_pred sometimes predicts classes absent from y_true."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, len(LABELS) + 1))
    labels = LABELS[:c]
    n = int(rng.integers(1, 120))
    true_pool = rng.choice(c, size=int(rng.integers(1, c + 1)), replace=False)
    y_true = np.array(labels)[rng.choice(true_pool, size=n)]
    y_pred = np.array(labels)[rng.integers(0, c, size=n)]
    weights = rng.integers(1, 4, size=n).astype(float)
    return labels, y_true, y_pred, weights


@pytest.mark.parametrize("seed", range(60))
def test_metrics_equal_sklearn(seed):
    labels, y_true, y_pred, weights = _random_case(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes absent from y_true
        expected = {
            "accuracy": accuracy_score(y_true, y_pred),
            "weighted_f1": f1_score(y_true, y_pred, average="weighted", labels=labels, zero_division=0),
            "macro_f1": f1_score(y_true, y_pred, average="macro", labels=labels, zero_division=0),
            "uar": balanced_accuracy_score(y_true, y_pred),
        }
        expected_w = {
            "accuracy": accuracy_score(y_true, y_pred, sample_weight=weights),
            "weighted_f1": f1_score(
                y_true, y_pred, average="weighted", labels=labels, zero_division=0, sample_weight=weights
            ),
            "macro_f1": f1_score(
                y_true, y_pred, average="macro", labels=labels, zero_division=0, sample_weight=weights
            ),
            "uar": balanced_accuracy_score(y_true, y_pred, sample_weight=weights),
        }
    wrappers = {"accuracy": accuracy, "weighted_f1": weighted_f1, "macro_f1": macro_f1, "uar": uar}
    cm = confusion_matrix(y_true, y_pred, labels=labels)
    cm_w = confusion_matrix(y_true, y_pred, labels=labels, sample_weight=weights)
    for name, fn in wrappers.items():
        assert fn(y_true, y_pred, labels=labels) == pytest.approx(expected[name], abs=1e-12), name
        assert float(METRICS[name](cm)) == pytest.approx(expected[name], abs=1e-12), name
        assert fn(y_true, y_pred, labels=labels, sample_weight=weights) == pytest.approx(expected_w[name]), (
            name
        )
        assert float(METRICS[name](cm_w)) == pytest.approx(expected_w[name], abs=1e-12), name


def test_absent_classes_follow_sklearn_zero_division():
    # 'c' is predicted but never true, 'd' is neither: macro-F1 averages over all 4 labels with F1=0 for both,
    # UAR averages recall over the classes present in y_true only.
    y_true, y_pred, labels = ["a", "a", "b", "b"], ["a", "b", "b", "c"], ["a", "b", "c", "d"]
    assert macro_f1(y_true, y_pred, labels=labels) == pytest.approx((2 / 3 + 0.5 + 0 + 0) / 4)
    assert weighted_f1(y_true, y_pred, labels=labels) == pytest.approx((2 / 3 + 0.5) / 2)
    assert uar(y_true, y_pred, labels=labels) == pytest.approx((0.5 + 0.5) / 2)


def test_confusion_matrix_layout_matches_sklearn():
    labels, y_true, y_pred, _ = _random_case(3)
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, labels=labels), sk_confusion_matrix(y_true, y_pred, labels=labels)
    )


def test_vectorised_confusion_and_metrics_equal_a_loop():
    rng = np.random.default_rng(0)
    c, n = 5, 300
    t, p = rng.integers(0, c, n), rng.integers(0, c, n)
    weights = rng.poisson(1.0, size=(4, 6, n)).astype(float)
    cms = confusion_matrices(t, p, n_classes=c, weights=weights)
    assert cms.shape == (4, 6, c, c)
    labels = [str(i) for i in range(c)]
    for i in range(4):
        for j in range(6):
            expected = sk_confusion_matrix(t, p, labels=range(c), sample_weight=weights[i, j])
            np.testing.assert_allclose(cms[i, j], expected)
            w_f1 = f1_score(
                t, p, average="weighted", labels=range(c), zero_division=0, sample_weight=weights[i, j]
            )
            assert weighted_f1_from_confusion(cms)[i, j] == pytest.approx(w_f1)
    assert accuracy_from_confusion(cms).shape == (4, 6)
    assert macro_f1(np.array(labels)[t], np.array(labels)[p], labels=labels) == pytest.approx(
        float(macro_f1_from_confusion(confusion_matrices(t, p, n_classes=c)))
    )


def test_empty_confusion_gives_nan_not_zero():
    empty = np.zeros((3, 3))
    for fn in METRICS.values():
        assert np.isnan(fn(empty))
    stacked = np.stack([empty, np.eye(3)])
    np.testing.assert_array_equal(uar_from_confusion(stacked), [np.nan, 1.0])


def test_unknown_label_is_a_clear_error():
    with pytest.raises(ValueError, match=r"y_pred holds 1 value\(s\) not in labels.*'happy'"):
        confusion_matrix(["joy", "anger"], ["joy", "happy"], labels=["joy", "anger"])
    with pytest.raises(ValueError, match="shape"):
        accuracy_from_confusion(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="duplicates"):
        encode_labels(["a"], labels=["a", "a"])


# ---------------------------------------------------------------------------------------------- resampling


def test_cluster_confusion_sums_rows_per_cluster():
    t = np.array([0, 1, 1, 0, 2])
    p = np.array([0, 1, 0, 0, 2])
    cm, keys = cluster_confusion(t, p, np.array(["s2", "s1", "s1", "s2", "s3"]), n_classes=3)
    assert keys.tolist() == ["s1", "s2", "s3"]
    np.testing.assert_array_equal(cm[0], [[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(cm[1], [[2, 0, 0], [0, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(cm.sum(0), sk_confusion_matrix(t, p))


def _naive_cluster_bootstrap_accuracy(correct_by_cluster, n_boot, rng):
    """Reference: a Python loop drawing clusters with replacement and pooling their utterances."""
    k = len(correct_by_cluster)
    out = np.empty(n_boot)
    for b in range(n_boot):
        draw = rng.integers(0, k, size=k)
        pooled = np.concatenate([correct_by_cluster[i] for i in draw])
        out[b] = pooled.mean()
    return out


def test_cluster_bootstrap_matches_a_naive_loop_in_distribution():
    rng = np.random.default_rng(1)
    # 12 speakers with very different accuracies and numbers of utterances.
    sizes = rng.integers(3, 40, size=12)
    acc = rng.uniform(0.2, 0.95, size=12)
    correct = [rng.random(s) < a for s, a in zip(sizes, acc, strict=True)]
    t = np.zeros(sizes.sum(), dtype=int)
    p = np.where(np.concatenate(correct), 0, 1)
    clusters = np.repeat(np.arange(12), sizes)
    cm, _ = cluster_confusion(t, p, clusters, n_classes=2)
    ours = accuracy_from_confusion(bootstrap_confusion(cm, n_boot=4000, rng=np.random.default_rng(2)))
    naive = _naive_cluster_bootstrap_accuracy(correct, 4000, np.random.default_rng(3))
    assert ours.mean() == pytest.approx(naive.mean(), abs=0.01)
    assert ours.std() == pytest.approx(naive.std(), rel=0.1)
    assert percentile_ci(ours)[0] == pytest.approx(percentile_ci(naive)[0], abs=0.03)


def test_utterance_bootstrap_keeps_n_and_is_unbiased():
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    cm, _ = cluster_confusion(t, p, np.arange(500), n_classes=4)
    boot = bootstrap_confusion(cm, n_boot=2000, rng=rng)
    np.testing.assert_array_equal(boot.sum(axis=(1, 2)), 500)
    np.testing.assert_allclose(boot.mean(0), cm.sum(0), rtol=0.05)
    assert bootstrap_confusion(np.zeros((0, 4, 4)), n_boot=5, rng=rng).shape == (5, 4, 4)


def test_bootstrap_is_seeded():
    cm = np.random.default_rng(0).integers(0, 5, size=(20, 3, 3)).astype(float)
    a = bootstrap_confusion(cm, n_boot=50, rng=np.random.default_rng(7))
    b = bootstrap_confusion(cm, n_boot=50, rng=np.random.default_rng(7))
    c = bootstrap_confusion(cm, n_boot=50, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_permutation_keeps_totals_and_group_sizes():
    rng = np.random.default_rng(0)
    unit_cm = rng.integers(0, 5, size=(9, 3, 3)).astype(float)
    group = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    perm = permutation_confusion(unit_cm, group, n_groups=3, n_perm=200, rng=rng)
    assert perm.shape == (200, 3, 3, 3)
    np.testing.assert_allclose(perm.sum(axis=1), np.broadcast_to(unit_cm.sum(0), (200, 3, 3)))
    # Each group receives as many units as it had: with one count per unit, a group's total is its size.
    ones = np.zeros((9, 3, 3))
    ones[:, 0, 0] = 1.0
    sizes = permutation_confusion(ones, group, n_groups=3, n_perm=50, rng=rng)[:, :, 0, 0]
    np.testing.assert_array_equal(sizes, np.broadcast_to([4, 3, 2], (50, 3)))
    assert not all(np.array_equal(perm[0], perm[i]) for i in range(1, 200))


def test_permutation_p_value_formula():
    perm = np.array([0.1, 0.5, 0.3, np.nan, 0.2])
    # observed 0.3: 0.5 and 0.3 are >= it, of 4 valid permutations -> (1 + 2) / (1 + 4)
    assert permutation_p_value(0.3, perm) == pytest.approx(3 / 5)
    assert permutation_p_value(-0.3, -perm) == pytest.approx(3 / 5)  # two-sided on absolute values
    assert permutation_p_value(0.9, perm) == pytest.approx(1 / 5)  # never 0
    assert np.isnan(permutation_p_value(np.nan, perm))


def test_percentile_ci_matches_quantiles_and_ignores_nan():
    x = np.random.default_rng(0).normal(size=1001)
    low, high = percentile_ci(np.append(x, np.nan), ci=0.9)
    assert (low, high) == pytest.approx(tuple(np.quantile(x, [0.05, 0.95])))
    assert np.isnan(percentile_ci(np.full(10, np.nan))[0])
    with pytest.raises(ValueError, match="ci"):
        percentile_ci(x, ci=95)
