"""Classification metrics computed from confusion matrices (METHODS.md §2).

Every metric has two forms:

* ``<metric>_from_confusion(cm)`` takes a ``(..., C, C)`` array of (possibly weighted) counts, rows = true
  class, columns = predicted class (scikit-learn's layout), and returns a ``(...)`` array. Leading axes are
  anything: bootstrap resamples, permutations, groups, domains. This is what makes the resampling in
  :mod:`fairser.metrics.resampling` vectorised.
* ``<metric>(y_true, y_pred, *, labels=None, sample_weight=None)`` takes label arrays and returns a float.

Conventions (chosen to equal scikit-learn, and tested against it):

* ``weighted_f1`` / ``macro_f1`` equal ``sklearn.metrics.f1_score(average="weighted" | "macro",
  labels=labels, zero_division=0)``: a class whose F1 is 0/0 (no true and no predicted sample) scores 0,
  and the macro mean runs over *all* ``labels``, present or not.
* ``uar`` (unweighted average recall, = balanced accuracy) equals ``sklearn.metrics.balanced_accuracy_score``:
  the mean recall over the classes present in ``y_true`` (classes with no true sample are left out).
* On an empty confusion matrix (total count 0) every metric is ``NaN``: there is nothing to measure, and a
  silent 0 would read as a bad model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = [
    "METRICS",
    "accuracy",
    "accuracy_from_confusion",
    "confusion_matrices",
    "confusion_matrix",
    "encode_labels",
    "macro_f1",
    "macro_f1_from_confusion",
    "per_class_f1_from_confusion",
    "recall_from_confusion",
    "uar",
    "uar_from_confusion",
    "weighted_f1",
    "weighted_f1_from_confusion",
]


def _div(num: np.ndarray, den: np.ndarray, *, fill: float) -> np.ndarray:
    """``num / den`` with ``fill`` where ``den == 0`` (no warnings)."""
    num, den = np.broadcast_arrays(np.asarray(num, dtype=float), np.asarray(den, dtype=float))
    out = np.full(num.shape, fill, dtype=float)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _check_cm(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm, dtype=float)
    if cm.ndim < 2 or cm.shape[-1] != cm.shape[-2]:
        raise ValueError(f"confusion matrices must have shape (..., C, C); got {cm.shape}")
    return cm


def encode_labels(y: Sequence | np.ndarray, *, labels: Sequence[str], name: str = "y") -> np.ndarray:
    """Map label values to integer indices into ``labels``.

    Raises ``ValueError`` naming the unknown values (and the first positions they occur at) if ``y`` holds
    a value that is not in ``labels``.
    """
    y = np.asarray(y, dtype=object)
    lookup = {lab: i for i, lab in enumerate(labels)}
    if len(lookup) != len(labels):
        raise ValueError(f"labels contain duplicates: {list(labels)}")
    idx = np.fromiter((lookup.get(v, -1) for v in y), dtype=np.int64, count=len(y))
    bad = np.flatnonzero(idx < 0)
    if bad.size:
        values = sorted({str(v) for v in y[bad]})
        raise ValueError(
            f"{name} holds {bad.size} value(s) not in labels={list(labels)}: {values[:10]} "
            f"(first at positions {bad[:5].tolist()})"
        )
    return idx


def confusion_matrices(
    true_idx: np.ndarray, pred_idx: np.ndarray, *, n_classes: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted confusion matrices for many weight vectors at once.

    Parameters
    ----------
    true_idx, pred_idx : int array (N,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
        C.
    weights : array (..., N), optional
        Per-sample weights (e.g. bootstrap counts), one weight vector per leading index; ``None`` = ones.

    Returns
    -------
    array (..., C, C)
        ``cm[..., t, p] = sum_n weights[..., n] * [true_n = t] * [pred_n = p]``.
    """
    true_idx = np.asarray(true_idx, dtype=np.int64)
    pred_idx = np.asarray(pred_idx, dtype=np.int64)
    if true_idx.shape != pred_idx.shape or true_idx.ndim != 1:
        raise ValueError(
            f"true_idx and pred_idx must be 1-D of one length; got {true_idx.shape}, {pred_idx.shape}"
        )
    cell = true_idx * n_classes + pred_idx
    if weights is None:
        return np.bincount(cell, minlength=n_classes**2).reshape(n_classes, n_classes).astype(float)
    weights = np.asarray(weights, dtype=float)
    if weights.shape[-1] != cell.size:
        raise ValueError(f"weights must end in N={cell.size}; got shape {weights.shape}")
    # One-hot over the C*C cells: a single matrix product gives all weighted matrices (BLAS, no loop).
    onehot = np.zeros((cell.size, n_classes**2))
    onehot[np.arange(cell.size), cell] = 1.0
    return (weights @ onehot).reshape(*weights.shape[:-1], n_classes, n_classes)


def confusion_matrix(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    labels: Sequence[str],
    sample_weight: np.ndarray | None = None,
) -> np.ndarray:
    """Confusion matrix (C, C) of label arrays, rows = true, columns = predicted, in the order of ``labels``."""
    t = encode_labels(y_true, labels=labels, name="y_true")
    p = encode_labels(y_pred, labels=labels, name="y_pred")
    if t.size != p.size:
        raise ValueError(f"y_true and y_pred differ in length: {t.size} vs {p.size}")
    return confusion_matrices(t, p, n_classes=len(labels), weights=sample_weight)


def accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Accuracy: trace / total; ``NaN`` when the total is 0."""
    cm = _check_cm(cm)
    return _div(np.trace(cm, axis1=-2, axis2=-1), cm.sum(axis=(-2, -1)), fill=np.nan)


def recall_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class recall (= true positive rate) (..., C); ``NaN`` for a class with no true sample."""
    cm = _check_cm(cm)
    return _div(np.diagonal(cm, axis1=-2, axis2=-1), cm.sum(axis=-1), fill=np.nan)


def per_class_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 = 2TP / (2TP + FP + FN) (..., C); 0 when that is 0/0 (sklearn's ``zero_division=0``)."""
    cm = _check_cm(cm)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    support, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    return _div(2.0 * tp, support + predicted, fill=0.0)


def _empty_to_nan(values: np.ndarray, cm: np.ndarray) -> np.ndarray:
    return np.where(cm.sum(axis=(-2, -1)) > 0, values, np.nan)


def macro_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Macro F1: unweighted mean of per-class F1 over all C classes (sklearn ``average="macro"``)."""
    cm = _check_cm(cm)
    return _empty_to_nan(per_class_f1_from_confusion(cm).mean(axis=-1), cm)


def weighted_f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Weighted F1 (W-F1, the headline metric of the ERM-MinMaxGAP paper): per-class F1 weighted by support."""
    cm = _check_cm(cm)
    support = cm.sum(axis=-1)
    return _div((per_class_f1_from_confusion(cm) * support).sum(axis=-1), support.sum(axis=-1), fill=np.nan)


def uar_from_confusion(cm: np.ndarray) -> np.ndarray:
    """UAR (unweighted average recall, = balanced accuracy): mean recall over classes present in y_true."""
    cm = _check_cm(cm)
    recall = recall_from_confusion(cm)
    present = cm.sum(axis=-1) > 0
    return _div(np.where(present, recall, 0.0).sum(axis=-1), present.sum(axis=-1), fill=np.nan)


#: Metric name -> function of a (..., C, C) confusion array; the metrics every evaluation reports.
METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "accuracy": accuracy_from_confusion,
    "weighted_f1": weighted_f1_from_confusion,
    "macro_f1": macro_f1_from_confusion,
    "uar": uar_from_confusion,
}


def _labels_or_union(y_true, y_pred, labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        return list(labels)
    return sorted(
        set(np.asarray(y_true, dtype=object).tolist()) | set(np.asarray(y_pred, dtype=object).tolist())
    )


def _label_metric(fn: Callable[[np.ndarray], np.ndarray], y_true, y_pred, labels, sample_weight) -> float:
    labels = _labels_or_union(y_true, y_pred, labels)
    return float(fn(confusion_matrix(y_true, y_pred, labels=labels, sample_weight=sample_weight)))


def accuracy(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Accuracy of label arrays (= ``sklearn.metrics.accuracy_score``). ``labels`` default: sorted union."""
    return _label_metric(accuracy_from_confusion, y_true, y_pred, labels, sample_weight)


def weighted_f1(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Weighted F1 (= ``f1_score(average="weighted", labels=labels, zero_division=0)``)."""
    return _label_metric(weighted_f1_from_confusion, y_true, y_pred, labels, sample_weight)


def macro_f1(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """Macro F1 over all ``labels`` (= ``f1_score(average="macro", labels=labels, zero_division=0)``)."""
    return _label_metric(macro_f1_from_confusion, y_true, y_pred, labels, sample_weight)


def uar(
    y_true: Sequence | np.ndarray,
    y_pred: Sequence | np.ndarray,
    *,
    labels: Sequence[str] | None = None,
    sample_weight: np.ndarray | None = None,
) -> float:
    """UAR, unweighted average recall (= ``sklearn.metrics.balanced_accuracy_score``)."""
    return _label_metric(uar_from_confusion, y_true, y_pred, labels, sample_weight)
