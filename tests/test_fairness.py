"""Multiclass ΔSP / ΔEO / equalized odds equal fairlearn's binary metrics on each one-vs-rest binarisation."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
)

from fairser.metrics import (
    FAIRNESS_GAPS,
    accuracy_from_confusion,
    delta_eo,
    delta_eo_from_confusion,
    delta_sp,
    equalized_odds,
    equalized_odds_from_confusion,
    gender_gap,
    group_confusion_matrices,
    metric_gap_from_confusion,
    reduce_classes,
    weighted_f1,
)

LABELS = ["anger", "happiness", "neutral", "sadness", "surprise"]


def _case(seed: int, groups=("male", "female")):
    """Random multiclass predictions in which every class occurs in every group (so all rates are defined)."""
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, len(LABELS) + 1))
    labels = LABELS[:c]
    y_true, y_pred, sens = [], [], []
    for g in groups:
        n = int(rng.integers(c + 5, 80))
        t = np.concatenate([np.arange(c), rng.integers(0, c, n - c)])
        p = np.where(rng.random(n) < rng.uniform(0.2, 0.9), t, rng.integers(0, c, n))
        y_true += [labels[i] for i in t]
        y_pred += [labels[i] for i in p]
        sens += [g] * n
    return labels, np.array(y_true), np.array(y_pred), np.array(sens)


def _one_vs_rest(labels, y_true, y_pred, sens, fn):
    return np.array(
        [fn((y_true == c).astype(int), (y_pred == c).astype(int), sensitive_features=sens) for c in labels]
    )


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("groups", [("male", "female"), ("male", "female", "nonbinary")])
def test_per_class_gaps_equal_fairlearn_one_vs_rest(seed, groups):
    labels, y_true, y_pred, sens = _case(seed, groups)
    kw = dict(sensitive_features=sens, labels=labels, reduce="none")
    expected_sp = _one_vs_rest(labels, y_true, y_pred, sens, demographic_parity_difference)
    expected_eo = _one_vs_rest(labels, y_true, y_pred, sens, equal_opportunity_difference)
    expected_eodds = _one_vs_rest(labels, y_true, y_pred, sens, equalized_odds_difference)
    np.testing.assert_allclose(delta_sp(y_true, y_pred, **kw), expected_sp, atol=1e-12)
    np.testing.assert_allclose(delta_eo(y_true, y_pred, **kw), expected_eo, atol=1e-12)
    np.testing.assert_allclose(equalized_odds(y_true, y_pred, **kw), expected_eodds, atol=1e-12)
    kw.pop("reduce")
    assert delta_sp(y_true, y_pred, **kw, reduce="mean") == pytest.approx(expected_sp.mean())
    assert delta_eo(y_true, y_pred, **kw, reduce="max") == pytest.approx(expected_eo.max())
    assert equalized_odds(y_true, y_pred, **kw, reduce="mean") == pytest.approx(expected_eodds.mean())


def test_parity_functions_vectorise_over_leading_axes():
    cms = []
    for seed in range(6):
        labels, y_true, y_pred, sens = _case(100 + seed)
        labels = LABELS  # one class set for all, some classes may be absent
        cm, groups = group_confusion_matrices(y_true, y_pred, sensitive_features=sens, labels=labels)
        assert groups == ["female", "male"]
        cms.append(cm)
    stacked = np.stack(cms).reshape(2, 3, 2, len(LABELS), len(LABELS))
    for name, fn in FAIRNESS_GAPS.items():
        out = fn(stacked)
        assert out.shape == (2, 3), name
        for i, cm in enumerate(cms):
            np.testing.assert_equal(out.reshape(-1)[i], fn(cm), err_msg=name)
    per_class = equalized_odds_from_confusion(stacked, reduce="none")
    assert per_class.shape == (2, 3, len(LABELS))


def test_undefined_rate_is_nan_and_skipped_not_zero():
    # 'sadness' never occurs in the female group: its TPR there is 0/0. fairlearn would report a TPR of 0 and
    # a gap of |recall_male - 0|; we report NaN for that class and average over the others.
    y_true = np.array(["anger", "anger", "sadness", "sadness", "anger", "anger", "anger"])
    y_pred = np.array(["anger", "sadness", "sadness", "sadness", "anger", "sadness", "anger"])
    sens = np.array(["male", "male", "male", "male", "female", "female", "female"])
    per_class = delta_eo(y_true, y_pred, sensitive_features=sens, labels=["anger", "sadness"], reduce="none")
    assert per_class[0] == pytest.approx(abs(0.5 - 2 / 3))
    assert np.isnan(per_class[1])
    assert delta_eo(y_true, y_pred, sensitive_features=sens, labels=["anger", "sadness"]) == pytest.approx(
        abs(0.5 - 2 / 3)
    )
    assert np.isnan(reduce_classes(np.array([np.nan, np.nan]), reduce="max"))
    with pytest.raises(ValueError, match="reduce"):
        reduce_classes(per_class, reduce="median")


def test_gender_gap_abs_signed_and_more_groups():
    labels, y_true, y_pred, sens = _case(5)
    m = weighted_f1(y_true[sens == "male"], y_pred[sens == "male"], labels=labels)
    f = weighted_f1(y_true[sens == "female"], y_pred[sens == "female"], labels=labels)
    assert gender_gap([m, f]) == pytest.approx(abs(m - f))
    cm, groups = group_confusion_matrices(y_true, y_pred, sensitive_features=sens, labels=labels)
    assert float(metric_gap_from_confusion(cm, metric="weighted_f1")) == pytest.approx(abs(m - f))
    assert gender_gap([0.7, 0.4, 0.55]) == pytest.approx(0.3)
    np.testing.assert_allclose(gender_gap(np.array([[0.1, 0.3], [0.5, 0.2]])), [0.2, 0.3])
    three = np.stack([cm[0], cm[1], cm[0] + cm[1]])
    accs = accuracy_from_confusion(three)
    assert float(metric_gap_from_confusion(three, metric=accuracy_from_confusion)) == pytest.approx(
        accs.max() - accs.min()
    )


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"\(\.\.\., G, C, C\)"):
        delta_eo_from_confusion(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="differ in length"):
        group_confusion_matrices(["a"], ["a"], sensitive_features=["m", "f"], labels=["a"])
