"""The pieces of a results row that every backbone shares: predictions table, per-domain evaluation and the
run's identity and training summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from fairser.config import EvalConfig

__all__ = ["evaluate_run", "predictions_table", "run_fields"]

_PREDICTION_META = ("gender", "language", "modality", "speaker", "corpus")


def predictions_table(
    *,
    meta: pd.DataFrame,
    proba: np.ndarray,
    labels: Sequence[str],
    spec,
    sensitive: Sequence[str] = ("gender",),
) -> pd.DataFrame:
    """The public predictions table of one run's test split (also the input of ``fairser audit``).

    Columns: ``id, split, y_true, y_pred, gender, language, modality, speaker, corpus``, the ``sensitive``
    columns not among them, ``prob_<label>`` per label, ``objective, seed, setting, run_id``.
    """
    cols = {
        "id": meta["id"].to_numpy(),
        "split": "test",
        "y_true": meta["emotion"].to_numpy(),
        "y_pred": np.asarray(labels)[proba.argmax(1)],
    }
    for c in (*_PREDICTION_META, *(s for s in sensitive if s not in _PREDICTION_META)):
        cols[c] = meta[c].to_numpy()
    pred = pd.DataFrame(cols)
    for i, lab in enumerate(labels):
        pred[f"prob_{lab}"] = proba[:, i]
    pred["objective"] = spec.objective.display
    pred["seed"] = spec.seed
    pred["setting"] = spec.setting
    pred["run_id"] = spec.run_id
    return pred


def _weighted_f1(frame: pd.DataFrame, labels: Sequence[str]) -> float:
    from sklearn.metrics import f1_score

    return float(
        f1_score(frame["y_true"], frame["y_pred"], labels=list(labels), average="weighted", zero_division=0)
    )


def evaluate_run(
    pred: pd.DataFrame,
    *,
    labels: Sequence[str],
    evaluation: EvalConfig,
    seed: int,
    domain_cols: Sequence[str] = ("language", "modality"),
    sensitive: Sequence[str] = ("gender",),
) -> tuple[dict[str, Any], list[str]]:
    """Metrics of one run: per-domain W-F1, gaps with CIs and p-values, overall W-F1 / UAR, summary.

    ``evaluation`` holds the settings used (``n_boot, n_perm, ci, min_samples, resample``); the domains are
    the combinations of ``domain_cols`` and the groups the values of the ``sensitive`` column (two or more
    columns: their intersection). Returns the row fields (``domains``: per domain its ``domain_cols``
    values, ``n``, ``weighted_f1``, ``<metric>_gap`` etc. and ``weighted_f1_<value>`` per value;
    ``overall_weighted_f1``, ``overall_uar``, ``summary``) and the evaluation's notes.
    """
    from sklearn.metrics import balanced_accuracy_score

    from fairser.metrics import evaluate_predictions

    domain_cols = list(domain_cols)
    # several columns: evaluate_predictions forms their intersection itself, in fairser's value order
    # (gender first, male before female), so a signed gap keeps its reference
    ev = evaluate_predictions(
        pred,
        labels=list(labels),
        sensitive=list(sensitive),
        domain_cols=tuple(domain_cols),
        n_boot=evaluation.n_boot,
        n_perm=evaluation.n_perm,
        ci=evaluation.ci,
        min_samples=evaluation.min_samples,
        resample=evaluation.resample,
        seed=seed,
    )
    gaps, by_group = ev.gaps, ev.table("by_group")
    attribute = ev.attribute  # the column of the value in the tables, e.g. ``gender × age_band``
    parts = pred.groupby(domain_cols, sort=False) if domain_cols else [((), pred)]
    domains = []
    for key, sub in parts:
        row: dict[str, Any] = dict(zip(domain_cols, key, strict=True))
        row["n"] = len(sub)
        row["weighted_f1"] = _weighted_f1(sub, labels)
        in_gaps = np.ones(len(gaps), dtype=bool)
        in_groups = by_group["metric"].to_numpy() == "weighted_f1"
        for c, v in zip(domain_cols, key, strict=True):
            in_gaps &= (gaps[c] == v).to_numpy()
            in_groups &= (by_group[c] == v).to_numpy()
        for _, gr in gaps[in_gaps].iterrows():
            for col in ("gap", "signed_gap", "ci_low", "ci_high", "p_value", "reason"):
                if col in gr:
                    row[f"{gr['metric']}_{col}"] = gr[col]
        for _, br in by_group[in_groups].iterrows():
            row[f"weighted_f1_{br[attribute]}"] = br["value"]
        domains.append(row)
    fields = {
        "domains": domains,
        "overall_weighted_f1": _weighted_f1(pred, labels),
        "overall_uar": float(balanced_accuracy_score(pred["y_true"], pred["y_pred"])) if len(pred) else None,
        "summary": ev.summary.to_dict(orient="records"),
    }
    return fields, list(ev.notes)


def run_fields(*, spec, result) -> dict[str, Any]:
    """Identity and training summary of a finished run (any trainer's result with ``best_epoch``,
    ``best_score`` and ``history``). An objective's own summary of its training (e.g. MinMaxGAP's final
    lambda) is ``objective.run_summary(step_logs)``, added to the row by the run pipeline."""
    return {
        "run_id": spec.run_id,
        "status": "ok",
        "setting": spec.setting,
        "objective": spec.objective.name,
        "objective_label": spec.objective.display,
        "params": spec.objective.params,
        "seed": spec.seed,
        "best_epoch": result.best_epoch,
        "valid_score": result.best_score,
        "epochs_run": len(result.history),
        **({"config_id": spec.config_id} if getattr(spec, "config_id", None) else {}),
    }
