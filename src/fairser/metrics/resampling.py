"""Vectorised cluster bootstrap and permutation test on confusion matrices (METHODS.md §2, "Uncertainty").

Utterances of one speaker are correlated and gender is a property of the speaker, so the unit of
resampling is the *cluster* (a speaker; or a single utterance for utterance-level resampling):

* **Cluster bootstrap** (Field & Welsh 2007, "Bootstrapping clustered data"): draw clusters with replacement
  within a stratum (a (domain, gender) group) and take all their utterances. Every metric here is a function
  of a confusion matrix, and a resample's confusion matrix is ``sum_k count_k * cm_k`` over the per-cluster
  matrices ``cm_k`` with multinomial draw counts ``count_k``. So all B resamples are one
  ``(B, K) @ (K, C*C)`` product after one ``multinomial(K, 1/K, size=B)`` draw: no Python loop per
  resample. (This is the per-utterance weight matrix ``(B, N)`` summed within clusters before the product.)
  Clusters with identical matrices are merged first (exact: their counts are exchangeable), which turns
  utterance-level resampling into a multinomial over the C*C cells.
* **Permutation test** (Good 2005, "Permutation, Parametric and Bootstrap Tests of Hypotheses"): shuffle the
  group labels *between clusters* (H0: speakers' gender labels are exchangeable within the domain), all
  permutations at once as a ``(P, K)`` label matrix; ``p = (1 + #{perm gap >= observed}) / (1 + #perms)``
  (Phipson & Smyth 2010: never 0).

Randomness comes from a ``numpy.random.Generator``; the same seed gives the same numbers.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "bootstrap_confusion",
    "cluster_confusion",
    "permutation_confusion",
    "permutation_p_value",
    "percentile_ci",
]


def cluster_confusion(
    true_idx: np.ndarray, pred_idx: np.ndarray, clusters: np.ndarray, *, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster confusion matrices.

    Parameters
    ----------
    true_idx, pred_idx : int array (N,)
        Class indices in ``[0, n_classes)``.
    clusters : array (N,)
        Cluster id of each row (speaker ids, or row ids for utterance-level resampling); any hashable values.
    n_classes : int
        C.

    Returns
    -------
    cm : array (K, C, C)
        One confusion matrix per distinct cluster, clusters in sorted order.
    keys : array (K,)
        The sorted distinct cluster ids.
    """
    keys, codes = np.unique(np.asarray(clusters), return_inverse=True)
    cell = np.asarray(true_idx, dtype=np.int64) * n_classes + np.asarray(pred_idx, dtype=np.int64)
    flat = np.bincount(codes.ravel() * n_classes**2 + cell, minlength=keys.size * n_classes**2)
    return flat.reshape(keys.size, n_classes, n_classes).astype(float), keys


def bootstrap_confusion(cluster_cm: np.ndarray, *, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Confusion matrices of ``n_boot`` cluster-bootstrap resamples of one stratum.

    Parameters
    ----------
    cluster_cm : array (K, C, C)
        Per-cluster confusion matrices of the stratum (e.g. one per speaker of a (domain, gender) group).
    n_boot : int
        Number of resamples B.
    rng : numpy Generator

    Returns
    -------
    array (B, C, C)
        Each resample draws K clusters with replacement and sums their matrices. An empty stratum (K = 0)
        gives all-zero matrices.
    """
    cluster_cm = np.asarray(cluster_cm, dtype=float)
    k, c = cluster_cm.shape[0], cluster_cm.shape[-1]
    if k == 0:
        return np.zeros((n_boot, c, c))
    types, multiplicity = np.unique(cluster_cm.reshape(k, c * c), axis=0, return_counts=True)
    counts = rng.multinomial(k, multiplicity / k, size=n_boot)  # (B, n_types)
    return (counts @ types).reshape(n_boot, c, c)


def permutation_confusion(
    unit_cm: np.ndarray, unit_group: np.ndarray, *, n_groups: int, n_perm: int, rng: np.random.Generator
) -> np.ndarray:
    """Group confusion matrices under ``n_perm`` random reassignments of group labels between units.

    Parameters
    ----------
    unit_cm : array (..., K, C, C)
        Per-unit (speaker or utterance) confusion matrices of one domain. Leading axes, if any, are independent
        data sets whose units have the same groups (the simulated test sets of :mod:`fairser.metrics.power`);
        each gets its own permutations.
    unit_group : int array (K,)
        Group index in ``[0, n_groups)`` of each unit (e.g. 0 = male, 1 = female).
    n_groups : int
        G.
    n_perm : int
        Number of permutations P.
    rng : numpy Generator

    Returns
    -------
    array (..., P, G, C, C)
        Group sizes (in units) are kept; which unit belongs to which group is shuffled.
    """
    unit_cm = np.asarray(unit_cm, dtype=float)
    batch, k, c = unit_cm.shape[:-3], unit_cm.shape[-3], unit_cm.shape[-1]
    labels = np.asarray(unit_group, dtype=np.int64)
    if labels.shape != (k,):
        raise ValueError(f"unit_group must have shape ({k},); got {labels.shape}")
    permuted = rng.permuted(np.tile(labels, (*batch, n_perm, 1)), axis=-1)  # (..., P, K)
    onehot = permuted[..., None, :] == np.arange(n_groups)[:, None]  # (..., P, G, K)
    onehot = onehot.reshape(*batch, n_perm * n_groups, k).astype(float)
    out = onehot @ unit_cm.reshape(*batch, k, c * c)  # one product per data set: (..., P*G, C*C)
    return out.reshape(*batch, n_perm, n_groups, c, c)


def percentile_ci(samples: np.ndarray, *, ci: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval (Efron & Tibshirani 1993, §13.3): the ``(1-ci)/2`` and ``(1+ci)/2``
    quantiles over ``axis``, ignoring ``NaN`` resamples (a resample where the statistic is undefined).
    All-``NaN`` gives ``NaN``."""
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1); got {ci}")
    samples = np.asarray(samples, dtype=float)
    alpha = (1.0 - ci) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices -> NaN, which is what we want
        low, high = np.nanquantile(samples, [alpha, 1.0 - alpha], axis=axis)
    return low, high


def permutation_p_value(observed: np.ndarray, permuted: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Permutation p-value ``(1 + #{|perm| >= |obs|}) / (1 + #valid perms)`` along ``axis``.

    Permutations where the statistic is undefined (``NaN``) are left out of both counts; a ``NaN``
    observed value gives ``NaN``. A relative tolerance of 1e-9 counts ties as ``>=`` despite rounding.
    """
    observed = np.abs(np.asarray(observed, dtype=float))
    permuted = np.abs(np.asarray(permuted, dtype=float))
    obs = np.expand_dims(observed, axis)
    valid = ~np.isnan(permuted)
    extreme = valid & (permuted >= obs - 1e-9 * np.maximum(np.abs(obs), 1.0))
    p = (1.0 + extreme.sum(axis=axis)) / (1.0 + valid.sum(axis=axis))
    return np.where(np.isnan(observed), np.nan, p)
