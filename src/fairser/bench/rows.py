"""The pieces of a results row that every backbone shares: predictions table and per-domain evaluation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score

from fairser.config import EvalConfig

__all__ = ["evaluate_run", "predictions_table", "run_fields"]


def predictions_table(*, meta: pd.DataFrame, proba: np.ndarray, labels: Sequence[str], spec) -> pd.DataFrame:
    """The public predictions table of one run's test split (also the input of ``fairser audit``)."""
    pred = pd.DataFrame(
        {
            "id": meta["id"].to_numpy(),
            "split": "test",
            "y_true": meta["emotion"].to_numpy(),
            "y_pred": np.asarray(labels)[proba.argmax(1)],
            "gender": meta["gender"].to_numpy(),
            "language": meta["language"].to_numpy(),
            "modality": meta["modality"].to_numpy(),
            "speaker": meta["speaker"].to_numpy(),
            "corpus": meta["corpus"].to_numpy(),
        }
    )
    for i, lab in enumerate(labels):
        pred[f"prob_{lab}"] = proba[:, i]
    pred["objective"] = spec.objective.display
    pred["seed"] = spec.seed
    pred["setting"] = spec.setting
    pred["run_id"] = spec.run_id
    return pred


def _weighted_f1(frame: pd.DataFrame, labels: Sequence[str]) -> float:
    return float(
        f1_score(frame["y_true"], frame["y_pred"], labels=list(labels), average="weighted", zero_division=0)
    )


def evaluate_run(
    pred: pd.DataFrame, *, labels: Sequence[str], evaluation: EvalConfig, seed: int
) -> tuple[dict[str, Any], list[str]]:
    """Metrics of one run: per-domain W-F1, gaps with CIs and p-values, overall W-F1 / UAR, summary.

    Returns the row fields (``domains``, ``overall_weighted_f1``, ``overall_uar``, ``summary``) and the
    evaluation's notes.
    """
    from fairser.metrics import evaluate_predictions

    ev = evaluate_predictions(
        pred,
        labels=list(labels),
        domain_cols=("language", "modality"),
        n_boot=evaluation.n_boot,
        n_perm=evaluation.n_perm,
        ci=evaluation.ci,
        min_samples=evaluation.min_samples,
        resample=evaluation.resample,
        seed=seed,
    )
    gaps, by_group = ev.gaps, ev.table("by_group")
    domains = []
    for (lang, mod), sub in pred.groupby(["language", "modality"], sort=False):
        row: dict[str, Any] = {
            "language": lang,
            "modality": mod,
            "n": len(sub),
            "weighted_f1": _weighted_f1(sub, labels),
        }
        for _, gr in gaps[(gaps["language"] == lang) & (gaps["modality"] == mod)].iterrows():
            for col in ("gap", "signed_gap", "ci_low", "ci_high", "p_value", "reason"):
                if col in gr:
                    row[f"{gr['metric']}_{col}"] = gr[col]
        sel = by_group[
            (by_group["language"] == lang)
            & (by_group["modality"] == mod)
            & (by_group["metric"] == "weighted_f1")
        ]
        for _, br in sel.iterrows():
            row[f"weighted_f1_{br['gender']}"] = br["value"]
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
    ``best_score``, ``history`` and per-step ``step_logs``), incl. MinMaxGAP's final lambda and last-epoch R."""
    logs = result.step_logs
    lam = [s["lambda"] for s in logs if "lambda" in s]
    last_epoch = logs[-1]["epoch"] if logs else None
    r_last = [s["R"] for s in logs if "R" in s and s["epoch"] == last_epoch]
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
        "final_lambda": lam[-1] if lam else None,
        "mean_R_last_epoch": float(np.mean(r_last)) if r_last else None,
    }
