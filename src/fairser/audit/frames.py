""":func:`audit_predictions`: check a predictions table, split it into runs, and evaluate every run for
every sensitive attribute asked for (one :class:`~fairser.metrics.MetricFrame` each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import pandas as pd

from fairser.audit.container import Audit
from fairser.audit.runs import RUN_COLUMNS, check_unique_ids, run_label, split_runs
from fairser.audit.table import (
    SOURCE_ROW,
    AuditInputError,
    check_predictions,
    detect_source,
    input_warnings,
    read_predictions,
    resolve_labels,
)
from fairser.metrics import MetricFrame, evaluate_predictions
from fairser.metrics.power import minimum_detectable_gap
from fairser.progress import progress_bar

__all__ = ["attributes_of", "audit_predictions"]


def attributes_of(sensitive: str | Sequence[str], *, marginals: bool = False) -> list[list[str]]:
    """The attributes an audit covers, each as its list of columns: one column alone, or the intersection
    of two or more (preceded by each column alone when ``marginals``)."""
    columns = [sensitive] if isinstance(sensitive, str) else list(sensitive)
    if not columns:
        raise AuditInputError("no sensitive column given: name at least one (e.g. --sensitive gender)")
    if len(set(columns)) != len(columns):
        raise AuditInputError(f"a sensitive column is named twice: {columns}")
    if len(columns) == 1:
        return [columns]
    return [*([c] for c in columns if marginals), columns]


def audit_predictions(
    predictions: pd.DataFrame | str | Path | Sequence[str | Path],
    *,
    labels: str | Sequence[str] | None = None,
    sensitive: str | Sequence[str] = ("gender",),
    marginals: bool = False,
    domain_cols: Sequence[str] = ("language", "modality"),
    by: Sequence[str] | None = None,
    n_boot: int = 1000,
    n_perm: int = 1000,
    ci: float = 0.95,
    min_samples: int = 10,
    resample: Literal["speaker", "utterance"] = "speaker",
    speaker_col: str = "speaker",
    seed: int = 0,
    power: bool = False,
    power_metric: str = "weighted_f1",
    power_sims: int = 300,
    power_perms: int = 200,
    relevant_gap: float | None = None,
    progress: bool = False,
) -> Audit:
    """Audit a predictions table: every metric and gap of METHODS.md §2 per run, domain and value.

    Parameters
    ----------
    predictions : DataFrame or path(s)
        One row per utterance: ``y_true``, ``y_pred`` (or ``prob_<label>`` columns to take the argmax of),
        the ``sensitive`` columns, the ``domain_cols``; ``speaker`` and ``id`` when present. CSV paths are
        read with :func:`read_predictions` (a benchmark folder: all its ``runs/*/predictions.csv``).
    labels : str or sequence of str, optional
        Label set (``"meld7"``, ``"core4"``, ``"a,b,c"`` or a list). Default: inferred from the data.
    sensitive : str or sequence of str
        The sensitive attribute: one column (``gender`` by default; any column, any number of values), or
        two or more columns whose intersection is the attribute (values joined by ``" × "``, attribute
        ``"gender × age_band"``). A row with any part unknown belongs to no group.
    marginals : bool
        With several ``sensitive`` columns, also audit each column on its own (before the intersection).
    domain_cols : sequence of str
        Columns whose combination is a domain (METHODS.md §1); ``()`` for none.
    by : sequence of str, optional
        Columns that identify a run; each run is audited separately (the metrics need one prediction per
        utterance). Default: those of :data:`RUN_COLUMNS` present; ``()`` for one run.
    n_boot, n_perm, ci, min_samples, resample, speaker_col, seed
        Passed to :func:`fairser.metrics.evaluate_predictions` (speaker-level cluster bootstrap and
        between-speaker permutation test by default; same seed, same numbers).
    power : bool
        Also the minimum detectable gap (MDG, 80% power, alpha 0.05) of ``power_metric`` per domain, by
        :func:`fairser.metrics.power.minimum_detectable_gap` (``power_sims`` simulated test sets,
        ``power_perms`` permutations each): columns ``mdg``, ``mdg_se`` and ``mdg_reason`` of the ``gaps``
        table, filled on the rows of ``power_metric`` (``NaN`` on the others).
    relevant_gap : float, optional
        The gap that matters (metric units, 0.05 = 5 points); the printed audit says where the MDG exceeds it.
    progress : bool
        Show a progress bar over runs × attributes.

    Returns
    -------
    Audit
        One :class:`~fairser.metrics.MetricFrame` per run and attribute (its ``run`` holds the run's
        keys), the input warnings, and the data source.

    Raises
    ------
    AuditInputError
        Missing columns, unknown or missing labels, bad probabilities, duplicate ids within a run (the
        message names the rows and suggests ``by``).
    """
    if not isinstance(predictions, pd.DataFrame):
        predictions = read_predictions(predictions)
    source, synthetic = detect_source(predictions)
    attributes = attributes_of(sensitive, marginals=marginals)
    columns, domain_cols = attributes[-1], list(domain_cols)
    by_cols = [c for c in RUN_COLUMNS if c in predictions.columns] if by is None else list(by)
    if by is None and "split" in by_cols and predictions["split"].nunique(dropna=False) == 1:
        by_cols.remove("split")  # one split: no need to name it in every run
    by_cols = [c for c in by_cols if c not in (*columns, *domain_cols)]
    df, label_list, notes, warnings = check_predictions(
        predictions, labels=resolve_labels(labels), sensitive=columns, domain_cols=domain_cols, by=by_cols
    )
    run_cols, runs = split_runs(df, by=by_cols)

    frames: list[MetricFrame] = []
    per_run: dict[str, list[str]] = {}  # warning -> runs it applies to (said once, not once per run)
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("auditing runs", total=len(runs) * len(attributes))
        for run, rows in runs:
            check_unique_ids(rows, run=run if run_cols else {}, domain_cols=domain_cols, by_cols=by_cols)
            for attribute in attributes:
                for w in input_warnings(
                    rows,
                    sensitive=attribute,
                    domain_cols=domain_cols,
                    speaker_col=speaker_col,
                    min_samples=min_samples,
                ):
                    per_run.setdefault(w, []).append(run_label(run))
                data = rows.drop(columns=[SOURCE_ROW], errors="ignore")  # (file:line is for messages only)
                try:
                    frame = evaluate_predictions(
                        data,
                        labels=label_list,
                        sensitive=attribute,
                        domain_cols=domain_cols,
                        n_boot=n_boot,
                        n_perm=n_perm,
                        ci=ci,
                        min_samples=min_samples,
                        resample=resample,
                        speaker_col=speaker_col,
                        seed=seed,
                    )
                    if power:
                        frame = _with_mdg(
                            frame,
                            data,
                            metric=power_metric,
                            labels=label_list,
                            attribute=attribute,
                            domain_cols=domain_cols,
                            speaker_col=speaker_col,
                            min_samples=min_samples,
                            n_sim=power_sims,
                            n_perm=power_perms,
                            seed=seed,
                            relevant_gap=relevant_gap,
                        )
                except ValueError as err:
                    prefix = f"run {run_label(run)}: " if run_cols else ""
                    raise AuditInputError(f"{prefix}{err}") from None
                frames.append(replace(frame, run=run))
                bar.advance(task)
    for w, where in per_run.items():
        where = list(dict.fromkeys(where))
        if not run_cols:
            warnings.append(w)
        elif len(where) == len(runs):
            warnings.append(f"{w} (in every run)" if len(runs) > 1 else f"run {where[0]}: {w}")
        else:
            shown = "; ".join(where[:4]) + (f" and {len(where) - 4} more" if len(where) > 4 else "")
            warnings.append(f"{w} (in run(s) {shown})")
    settings = {
        "labels": label_list,
        "sensitive": columns,
        "marginals": marginals,
        "domain_cols": domain_cols,
        "by": run_cols,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "ci": ci,
        "min_samples": min_samples,
        "resample": resample,
        "speaker_col": speaker_col,
        "seed": seed,
        "power": (
            {
                "metric": power_metric,
                "power": 0.8,
                "alpha": 0.05,
                "n_sim": power_sims,
                "n_perm": power_perms,
                "relevant_gap": relevant_gap,
            }
            if power
            else None
        ),
        "n_rows": len(df),
        "n_runs": len(runs),
    }
    return Audit(
        frames=frames,
        run_columns=run_cols,
        notes=notes,
        warnings=warnings,
        settings=settings,
        source=source,
        synthetic=synthetic,
    )


def _with_mdg(
    frame: MetricFrame,
    rows: pd.DataFrame,
    *,
    metric: str,
    attribute: list[str],
    relevant_gap: float | None,
    **kwargs,
) -> MetricFrame:
    """``frame`` with ``mdg``, ``mdg_se``, ``mdg_reason`` in its gaps table (on the rows of ``metric``) and
    the power analysis's settings in ``settings["power"]``."""
    power = minimum_detectable_gap(rows, metric=metric, sensitive=attribute, **kwargs)
    domain_cols = frame.domain_cols
    gaps = frame.gaps.copy()
    keyed = power.set_index(domain_cols) if domain_cols else power
    for col, src in (("mdg", "mdg"), ("mdg_se", "mdg_se"), ("mdg_reason", "reason")):
        values = []
        for rec in gaps[[*domain_cols, "metric"]].to_dict(orient="records"):
            if rec["metric"] != metric:
                values.append("" if col == "mdg_reason" else float("nan"))
                continue
            key = tuple(str(rec[c]) for c in domain_cols)
            hit = keyed.loc[key if len(key) > 1 else key[0]] if domain_cols else keyed.iloc[0]
            values.append(hit[src])
        gaps[col] = values
    settings = {
        "metric": metric,
        "power": 0.8,
        "alpha": 0.05,
        "n_sim": kwargs["n_sim"],
        "n_perm": kwargs["n_perm"],
        "relevant_gap": relevant_gap,
    }
    return replace(
        frame, tables={**frame.tables, "gaps": gaps}, settings={**frame.settings, "power": settings}
    )
