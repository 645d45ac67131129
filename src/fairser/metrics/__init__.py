"""Metrics for fair SER (METHODS.md §2): classification metrics, gaps (max - min over the values of any
sensitive attribute) and multiclass parity, speaker-level bootstrap CIs and permutation tests, and the
evaluation of a predictions table.

Start with :func:`evaluate_predictions`, which returns a :class:`MetricFrame`; the building blocks work on ``(..., C, C)`` confusion arrays so
that they vectorise over bootstrap resamples and permutations.
"""

from fairser.metrics.classification import (
    METRICS,
    accuracy,
    accuracy_from_confusion,
    confusion_matrices,
    confusion_matrix,
    encode_labels,
    macro_f1,
    macro_f1_from_confusion,
    per_class_f1_from_confusion,
    recall_from_confusion,
    uar,
    uar_from_confusion,
    weighted_f1,
    weighted_f1_from_confusion,
)
from fairser.metrics.evaluate import evaluate_predictions
from fairser.metrics.fairness import (
    FAIRNESS_GAPS,
    delta_eo,
    delta_eo_from_confusion,
    delta_sp,
    delta_sp_from_confusion,
    equalized_odds,
    equalized_odds_from_confusion,
    false_positive_rate_from_confusion,
    gender_gap,
    group_confusion_matrices,
    group_gap,
    metric_gap_from_confusion,
    reduce_classes,
    selection_rate_from_confusion,
    true_positive_rate_from_confusion,
)
from fairser.metrics.frame import GAP_METRICS, TABLES, MetricFrame
from fairser.metrics.resampling import (
    bootstrap_confusion,
    cluster_confusion,
    percentile_ci,
    permutation_confusion,
    permutation_p_value,
)

__all__ = [
    "FAIRNESS_GAPS",
    "GAP_METRICS",
    "METRICS",
    "TABLES",
    "MetricFrame",
    "accuracy",
    "accuracy_from_confusion",
    "bootstrap_confusion",
    "cluster_confusion",
    "confusion_matrices",
    "confusion_matrix",
    "delta_eo",
    "delta_eo_from_confusion",
    "delta_sp",
    "delta_sp_from_confusion",
    "encode_labels",
    "equalized_odds",
    "equalized_odds_from_confusion",
    "evaluate_predictions",
    "false_positive_rate_from_confusion",
    "gender_gap",
    "group_confusion_matrices",
    "group_gap",
    "macro_f1",
    "macro_f1_from_confusion",
    "metric_gap_from_confusion",
    "per_class_f1_from_confusion",
    "percentile_ci",
    "permutation_confusion",
    "permutation_p_value",
    "recall_from_confusion",
    "reduce_classes",
    "selection_rate_from_confusion",
    "true_positive_rate_from_confusion",
    "uar",
    "uar_from_confusion",
    "weighted_f1",
    "weighted_f1_from_confusion",
]
