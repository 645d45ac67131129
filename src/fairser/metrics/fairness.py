"""Group fairness for multiclass SER: gender gaps, ΔSP, ΔEO, equalized odds (METHODS.md §2).

All ``*_from_confusion`` functions take a ``(..., G, C, C)`` array: one confusion matrix (rows = true,
columns = predicted) per value of the sensitive attribute on axis ``-3`` (G = 2 for male/female), with any
leading axes (bootstrap resamples, permutations). With two groups a gap is ``|a - b|``; with more it is
``max - min`` over groups, as in fairlearn's ``MetricFrame.difference(method="between_groups")``.

Multiclass parity is measured per class on the one-vs-rest binarisation ``[y = c]`` vs ``[ŷ = c]``:

* ΔSP (statistical / demographic parity): gap in ``P(ŷ = c | s)``.
* ΔEO (equal opportunity, Hardt et al. 2016): gap in the true positive rate ``P(ŷ = c | y = c, s)``.
* Equalized odds (Hardt et al. 2016): ``max(TPR gap, FPR gap)``.

Each equals fairlearn's ``demographic_parity_difference``, ``equal_opportunity_difference`` and
``equalized_odds_difference`` on that binarisation (fairlearn's own functions are binary-only). One deliberate
difference: where a rate is undefined (a group has no sample of class c, so its TPR is 0/0) fairlearn reports
0 and we report ``NaN`` for that class; the ``mean``/``max`` over classes skip undefined classes, and are
``NaN`` only when no class is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from fairser.metrics.classification import METRICS, _div, confusion_matrix, recall_from_confusion

__all__ = [
    "FAIRNESS_GAPS",
    "delta_eo",
    "delta_eo_from_confusion",
    "delta_sp",
    "delta_sp_from_confusion",
    "equalized_odds",
    "equalized_odds_from_confusion",
    "false_positive_rate_from_confusion",
    "gender_gap",
    "group_confusion_matrices",
    "group_gap",
    "metric_gap_from_confusion",
    "reduce_classes",
    "selection_rate_from_confusion",
    "true_positive_rate_from_confusion",
]

Reduce = Literal["mean", "max", "none"]


def selection_rate_from_confusion(cm: np.ndarray) -> np.ndarray:
    """``P(ŷ = c)`` per class (..., C); ``NaN`` for an empty matrix."""
    cm = np.asarray(cm, dtype=float)
    return _div(cm.sum(axis=-2), cm.sum(axis=(-2, -1))[..., None], fill=np.nan)


def true_positive_rate_from_confusion(cm: np.ndarray) -> np.ndarray:
    """``P(ŷ = c | y = c)`` per class (..., C) (= recall); ``NaN`` for a class with no true sample."""
    return recall_from_confusion(cm)


def false_positive_rate_from_confusion(cm: np.ndarray) -> np.ndarray:
    """``P(ŷ = c | y ≠ c)`` per class (..., C); ``NaN`` when no sample has a true class other than c."""
    cm = np.asarray(cm, dtype=float)
    false_pos = cm.sum(axis=-2) - np.diagonal(cm, axis1=-2, axis2=-1)
    negatives = cm.sum(axis=(-2, -1))[..., None] - cm.sum(axis=-1)
    return _div(false_pos, negatives, fill=np.nan)


def group_gap(values: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """``max - min`` over the group axis (= ``|a - b|`` for two groups); ``NaN`` if any group is ``NaN``."""
    values = np.asarray(values, dtype=float)
    return values.max(axis=axis) - values.min(axis=axis)


def gender_gap(values: np.ndarray | Sequence[float], *, axis: int = -1) -> np.ndarray | float:
    """Gender gap of a metric: ``|M(male) - M(female)|``, or ``max - min`` over >2 groups (METHODS.md §2).

    ``values`` holds the metric per group along ``axis``. For the signed gap ``M(female) - M(male)`` just
    subtract the two values.
    """
    out = group_gap(np.asarray(values, dtype=float), axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def metric_gap_from_confusion(
    group_cm: np.ndarray, *, metric: str | Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Gap ``max_g M(g) - min_g M(g)`` of a metric (a name in :data:`~fairser.metrics.classification.METRICS`
    or a function of confusion arrays) over the group axis ``-3`` of ``group_cm`` (..., G, C, C)."""
    fn = METRICS[metric] if isinstance(metric, str) else metric
    return group_gap(fn(group_cm), axis=-1)


def reduce_classes(per_class: np.ndarray, *, reduce: Reduce) -> np.ndarray:
    """Mean or max over the class axis (last), skipping ``NaN`` classes; ``"none"`` returns it unchanged."""
    per_class = np.asarray(per_class, dtype=float)
    if reduce == "none":
        return per_class
    valid = ~np.isnan(per_class)
    n_valid = valid.sum(axis=-1)
    filled = np.where(valid, per_class, 0.0)
    if reduce == "mean":
        return _div(filled.sum(axis=-1), n_valid, fill=np.nan)
    if reduce == "max":
        return np.where(n_valid > 0, np.where(valid, per_class, -np.inf).max(axis=-1), np.nan)
    raise ValueError(f"reduce must be 'mean', 'max' or 'none'; got {reduce!r}")


def _check_group_cm(group_cm: np.ndarray) -> np.ndarray:
    group_cm = np.asarray(group_cm, dtype=float)
    if group_cm.ndim < 3 or group_cm.shape[-1] != group_cm.shape[-2]:
        raise ValueError(f"group confusion matrices must have shape (..., G, C, C); got {group_cm.shape}")
    return group_cm


def delta_sp_from_confusion(group_cm: np.ndarray, *, reduce: Reduce = "mean") -> np.ndarray:
    """ΔSP: per class ``max_g P(ŷ=c|g) - min_g P(ŷ=c|g)``, then mean / max over classes."""
    rates = selection_rate_from_confusion(_check_group_cm(group_cm))
    return reduce_classes(group_gap(rates, axis=-2), reduce=reduce)


def delta_eo_from_confusion(group_cm: np.ndarray, *, reduce: Reduce = "mean") -> np.ndarray:
    """ΔEO: per class gap in true positive rate (recall) over groups, then mean / max over classes."""
    rates = true_positive_rate_from_confusion(_check_group_cm(group_cm))
    return reduce_classes(group_gap(rates, axis=-2), reduce=reduce)


def equalized_odds_from_confusion(group_cm: np.ndarray, *, reduce: Reduce = "mean") -> np.ndarray:
    """Equalized odds: per class ``max(TPR gap, FPR gap)``, then mean / max over classes."""
    group_cm = _check_group_cm(group_cm)
    tpr_gap = group_gap(true_positive_rate_from_confusion(group_cm), axis=-2)
    fpr_gap = group_gap(false_positive_rate_from_confusion(group_cm), axis=-2)
    return reduce_classes(np.maximum(tpr_gap, fpr_gap), reduce=reduce)


#: Gap name -> function of (..., G, C, C) group confusion arrays returning (...); reported by every evaluation.
FAIRNESS_GAPS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "dsp_mean": lambda cm: delta_sp_from_confusion(cm, reduce="mean"),
    "dsp_max": lambda cm: delta_sp_from_confusion(cm, reduce="max"),
    "deo_mean": lambda cm: delta_eo_from_confusion(cm, reduce="mean"),
    "deo_max": lambda cm: delta_eo_from_confusion(cm, reduce="max"),
    "eodds_mean": lambda cm: equalized_odds_from_confusion(cm, reduce="mean"),
    "eodds_max": lambda cm: equalized_odds_from_confusion(cm, reduce="max"),
}


def group_confusion_matrices(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    labels: Sequence[str],
    groups: Sequence | None = None,
) -> tuple[np.ndarray, list]:
    """One confusion matrix per group: returns ``(cm (G, C, C), groups)``.

    ``groups`` default: the sorted distinct values of ``sensitive_features``.
    """
    y_true, y_pred = np.asarray(y_true, dtype=object), np.asarray(y_pred, dtype=object)
    sens = np.asarray(sensitive_features, dtype=object)
    if not (len(y_true) == len(y_pred) == len(sens)):
        raise ValueError(
            f"y_true, y_pred and sensitive_features differ in length: {len(y_true)}, {len(y_pred)}, {len(sens)}"
        )
    groups = sorted(set(sens.tolist()), key=str) if groups is None else list(groups)
    cms = [confusion_matrix(y_true[sens == g], y_pred[sens == g], labels=labels) for g in groups]
    return np.stack(cms), groups


def _labels_of(y_true, y_pred, labels):
    if labels is not None:
        return list(labels)
    return sorted(
        set(np.asarray(y_true, dtype=object).tolist()) | set(np.asarray(y_pred, dtype=object).tolist())
    )


def _from_labels(from_confusion, y_true, y_pred, sensitive_features, labels, reduce) -> np.ndarray | float:
    """A ``*_from_confusion`` gap of label arrays: per-group confusion matrices, then the gap."""
    labels = _labels_of(y_true, y_pred, labels)
    cm, _ = group_confusion_matrices(y_true, y_pred, sensitive_features=sensitive_features, labels=labels)
    out = from_confusion(cm, reduce=reduce)
    return float(out) if out.ndim == 0 else out


def delta_sp(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    labels: Sequence[str] | None = None,
    reduce: Reduce = "mean",
) -> np.ndarray | float:
    """Multiclass ΔSP of label arrays; ``reduce="none"`` gives the per-class array in ``labels`` order."""
    return _from_labels(delta_sp_from_confusion, y_true, y_pred, sensitive_features, labels, reduce)


def delta_eo(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    labels: Sequence[str] | None = None,
    reduce: Reduce = "mean",
) -> np.ndarray | float:
    """Multiclass ΔEO (TPR gap) of label arrays; ``reduce="none"`` gives the per-class array."""
    return _from_labels(delta_eo_from_confusion, y_true, y_pred, sensitive_features, labels, reduce)


def equalized_odds(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    sensitive_features: Sequence | np.ndarray,
    labels: Sequence[str] | None = None,
    reduce: Reduce = "mean",
) -> np.ndarray | float:
    """Multiclass equalized-odds difference of label arrays; ``reduce="none"`` gives the per-class array."""
    return _from_labels(equalized_odds_from_confusion, y_true, y_pred, sensitive_features, labels, reduce)
