"""Cross-validated grid cells (``protocol: kfold | loso``): the folds' out-of-fold predictions pooled into one
predictions table and one results row, evaluated like any run (METHODS.md §5).

Every speaker is tested in exactly one fold, so the pooled table holds each test utterance once; the gaps,
their speaker-cluster CIs and permutation tests are then computed on it by :func:`evaluate_run`, the same
evaluation as a holdout run's. The per-fold rows stay in ``results.jsonl``; the tables read the pooled rows
(:func:`headline_rows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fairser.results.rows import evaluate_run

if TYPE_CHECKING:
    from fairser.config import EvalConfig

__all__ = ["POOLED", "headline_rows", "pool_predictions", "pooled_row", "read_fold_predictions"]

#: The ``fold`` of a pooled row.
POOLED = "pooled"


def headline_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows the tables and the report read: holdout rows as they are and the pooled row of each
    cross-validated cell; per-fold rows (``fold`` an integer) are left out."""
    return [r for r in rows if r.get("fold", POOLED) == POOLED]


def read_fold_predictions(path: str | Path) -> pd.DataFrame:
    """A fold's ``predictions.csv`` as written: identifiers and labels as text (a speaker ``03`` stays
    ``03``), probabilities as floats, ``seed`` and ``fold`` as integers."""
    pred = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in pred.columns:
        if col.startswith("prob_"):
            pred[col] = pred[col].astype(float)
    for col in ("seed", "fold"):
        if col in pred.columns:
            pred[col] = pred[col].astype(int)
    return pred


def pool_predictions(preds: Sequence[pd.DataFrame], *, run_id: str) -> pd.DataFrame:
    """The folds' predictions concatenated in fold order, under the pooled ``run_id``.

    Raises ``ValueError`` if a speaker is tested in more than one fold or an utterance appears twice (the
    pooled evaluation assumes every speaker is tested exactly once).
    """
    if not preds:
        raise ValueError("no fold predictions to pool")
    seen: dict[str, int] = {}
    for i, pred in enumerate(preds):
        speakers = set(pred["corpus"].astype(str) + "/" + pred["speaker"].astype(str))
        twice = sorted(s for s in speakers if s in seen)
        if twice:
            raise ValueError(f"speaker(s) {twice[:5]} tested in folds {seen[twice[0]]} and {i}")
        seen.update(dict.fromkeys(speakers, i))
    pooled = pd.concat(list(preds), ignore_index=True)
    cols = [c for c in ("id", "modality") if c in pooled.columns]
    dup = pooled.duplicated(cols)
    if dup.any():
        raise ValueError(f"{int(dup.sum())} utterance(s) predicted in more than one fold")
    pooled["run_id"] = run_id
    return pooled


def pooled_row(
    fold_rows: Sequence[dict[str, Any]],
    pooled: pd.DataFrame,
    *,
    run_id: str,
    labels: Sequence[str],
    evaluation: EvalConfig,
    sensitive: Sequence[str] = ("gender",),
) -> dict[str, Any]:
    """The results row of one cross-validated cell: its identity (from the fold rows), the evaluation of the
    pooled predictions (:func:`evaluate_run`, seeded with the cell's seed) and a summary of every fold."""
    first = fold_rows[0]
    seed = int(first["seed"])
    metrics, notes = evaluate_run(
        pooled, labels=labels, evaluation=evaluation, seed=seed, sensitive=sensitive
    )
    row: dict[str, Any] = {
        "run_id": run_id,
        "status": "ok",
        "fold": POOLED,
        **{k: first[k] for k in ("setting", "objective", "objective_label", "params", "seed")},
        "n_folds": len(fold_rows),
        "folds": [
            {
                "run_id": r["run_id"],
                "fold": r["fold"],
                "test_speakers": r.get("fold_speakers", {}).get("test"),
                "best_epoch": r["best_epoch"],
                "valid_score": r["valid_score"],
                "overall_weighted_f1": r["overall_weighted_f1"],
                "overall_uar": r["overall_uar"],
            }
            for r in fold_rows
        ],
        "best_epoch": float(np.mean([r["best_epoch"] for r in fold_rows])),
        "valid_score": float(np.mean([r["valid_score"] for r in fold_rows])),
        "elapsed_s": float(sum(r.get("elapsed_s", 0.0) for r in fold_rows)),
        **metrics,
        "notes": notes,
    }
    for key in ("sensitive", "sampler", "head", "head_settings", "config_id"):
        if key in first:
            row[key] = first[key]
    if "groups" in first:  # IDI: settings and agreement over all rows (the training rows differ by fold)
        row["groups"] = {
            k: v for k, v in first["groups"].items() if k not in ("agreement_train", "changed_train_rows")
        }
    return row
