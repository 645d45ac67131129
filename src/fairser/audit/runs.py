"""Runs in a predictions table: which columns identify a run, how to split the table, how to name a run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fairser.audit.table import PROB, SOURCE_ROW, AuditInputError, where

__all__ = ["RUN_COLUMNS", "check_unique_ids", "run_label", "split_runs"]

#: Columns that identify one run in a predictions file holding several (the benchmark writes all of them).
RUN_COLUMNS: tuple[str, ...] = ("objective", "setting", "seed", "run_id", "split")


def split_runs(
    predictions: pd.DataFrame, *, by: Sequence[str] | None = None
) -> tuple[list[str], list[tuple[dict[str, Any], pd.DataFrame]]]:
    """Split a table holding several runs into ``(run_columns, [(run keys, rows), ...])``.

    ``by=None`` uses the columns of :data:`RUN_COLUMNS` present in the table (the benchmark writes
    ``objective, setting, seed, run_id``); ``by=()`` treats the whole table as one run.
    """
    cols = [c for c in RUN_COLUMNS if c in predictions.columns] if by is None else list(by)
    if not cols:
        return [], [({}, predictions)]
    runs = []
    for key, rows in predictions.groupby(cols, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        runs.append(({c: _plain(v) for c, v in zip(cols, key, strict=True)}, rows))
    return cols, runs


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def run_label(run: dict[str, Any]) -> str:
    """Short name of a run from its keys: ``ERM · audio · seed 0`` (the run id only when nothing else)."""
    parts = [str(run[k]) for k in ("objective", "setting") if k in run]
    if "seed" in run:
        parts.append(f"seed {run['seed']}")
    parts += [f"{k}={v}" for k, v in run.items() if k not in ("objective", "setting", "seed", "run_id")]
    if not parts and "run_id" in run:
        parts.append(str(run["run_id"]))
    return " · ".join(parts) or "all rows"


def check_unique_ids(
    rows: pd.DataFrame, *, run: dict[str, Any], domain_cols: Sequence[str], by_cols: Sequence[str]
) -> None:
    """One prediction per utterance and domain within a run, else an :class:`AuditInputError` naming the
    rows and the columns that tell them apart (candidates for ``by``)."""
    if "id" not in rows.columns:
        return
    keys = [*domain_cols, "id"]
    dup = rows.duplicated(keys, keep=False).to_numpy()
    if dup.any():
        prefix = f"run {run_label(run)}: " if run else ""
        raise AuditInputError(
            f"{prefix}the same utterance id occurs more than once within a domain in {where(rows, dup)}: "
            "does the table hold several runs? Each run is audited separately; "
            f"{_by_hint(rows[dup], keys, list(by_cols))}"
        )


def _by_hint(dup_rows: pd.DataFrame, keys: list[str], by_cols: list[str]) -> str:
    """Which columns tell the duplicated rows apart (candidates for ``by``)."""
    skip = {*keys, *by_cols, "y_true", "y_pred", "speaker", SOURCE_ROW}
    cols = [c for c in dup_rows.columns if c not in skip and not c.startswith(PROB)]
    varying = [c for c in cols if dup_rows.groupby(keys, dropna=False)[c].nunique(dropna=False).max() > 1]
    if varying:
        return f"columns that tell these rows apart: {varying}; add them with --by / by=[...]"
    return "no column tells these rows apart: remove the duplicates"
