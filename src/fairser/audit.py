"""Fairness audit of any model's predictions table (METHODS.md §2; ``fairser audit``).

A thin layer over :func:`fairser.metrics.evaluate_predictions` that a user with a model trained elsewhere
can point at a CSV: it checks the table and names the rows or groups that are wrong or too small, splits a
file that holds several runs (objectives, seeds) into one evaluation per run, adds intersectional groups
when several sensitive columns are given (e.g. gender × age band), and returns MetricFrame-like objects
(the vocabulary of fairlearn's ``MetricFrame``: ``overall``, ``by_group``, ``difference``, ``group_min``,
with bootstrap CIs and permutation p-values). Every number comes from the vectorised bootstrap and
permutation path of :mod:`fairser.metrics`; nothing is recomputed here.

Numbers that cannot be computed (a group below ``min_samples``, a language with one gender, a group with
one speaker, a class absent from a group) are ``NaN`` with a reason; :meth:`Audit.undefined` lists them all.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fairser.metrics import GAP_METRICS, METRICS, Evaluation, evaluate_predictions

__all__ = [
    "AUDIT_TABLES",
    "INTERSECTION_SEP",
    "RUN_COLUMNS",
    "Audit",
    "AuditFrame",
    "AuditInputError",
    "audit_predictions",
    "check_predictions",
    "read_predictions",
    "resolve_labels",
    "run_label",
    "split_runs",
]

#: Columns that identify one run in a predictions file holding several (the benchmark writes all four).
RUN_COLUMNS: tuple[str, ...] = ("objective", "setting", "seed", "run_id", "split")
#: Separator of the values (and column names) of an intersectional group, e.g. ``female × 60+``.
INTERSECTION_SEP = " × "
#: Tidy tables written by :meth:`Audit.write` (one CSV each), as in :class:`fairser.metrics.Evaluation`.
AUDIT_TABLES: tuple[str, ...] = (
    "overall",
    "by_domain",
    "by_group",
    "gaps",
    "per_class",
    "summary",
    "confusion",
)

_PROB = "prob_"
_GENDER_SPELLINGS = {
    "m": "male",
    "male": "male",
    "man": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
}
_GENDER_SPELLINGS |= {"u": "unknown", "unknown": "unknown"}
_SOURCE_ROW = "_source_row"  # "file:line" of each row read from CSV, used in messages only
_UNKNOWN = "unknown"
_LISTED = 5
_FORMAT = "fairser-audit/1"


class AuditInputError(ValueError):
    """The predictions table cannot be audited; the message names the columns, rows or groups concerned."""


# ----------------------------------------------------------------------------------------------- input


def read_predictions(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read one or several predictions CSVs into one table (all columns as text, probabilities as numbers).

    A folder is read as a benchmark output folder: every ``runs/*/predictions.csv`` in it. Each row keeps
    where it came from (``file:line``) for error messages. Empty cells are missing values; any other text,
    including ``NA``, is kept as written (so a speaker called ``NA`` stays a speaker).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("runs/*/predictions.csv"))
            if not found:
                raise AuditInputError(
                    f"{p} is a folder without runs/*/predictions.csv; pass a predictions CSV"
                )
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise AuditInputError(f"predictions file {p} does not exist")
    frames = []
    for f in files:
        try:
            df = pd.read_csv(f, dtype=str, keep_default_na=False, na_values=[""])
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise AuditInputError(f"{f} is not a readable CSV: {err}") from None
        df[_SOURCE_ROW] = [f"{f}:{i + 2}" for i in range(len(df))]  # line 1 is the header
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    for col in df.columns:
        if col.startswith(_PROB):
            df[col] = pd.to_numeric(df[col], errors="coerce")  # text that is not a number -> NaN, reported
    if "seed" in df.columns and df["seed"].notna().all() and df["seed"].str.fullmatch(r"-?\d+").all():
        df["seed"] = df["seed"].astype(int)
    if len(files) > 3:
        common = os.path.commonpath([str(f.resolve()) for f in files])
        df.attrs["source"] = f"{len(files)} predictions files under {common}"
    else:
        df.attrs["source"] = ", ".join(map(str, files))
    df.attrs["files"] = [str(f) for f in files]
    return df


def resolve_labels(labels: str | Sequence[str] | None) -> list[str] | None:
    """A label list from a sequence, a comma-separated string, or a set name (``meld7``, ``core4``)."""
    from fairser.data.labels import CORE4, MELD_EMOTIONS

    if labels is None:
        return None
    if isinstance(labels, str):
        named = {"meld7": MELD_EMOTIONS, "core4": CORE4}
        labels = named.get(labels.strip().lower()) or [x.strip() for x in labels.split(",") if x.strip()]
    out = [str(x) for x in labels]
    if len(out) < 2:
        raise AuditInputError(f"need at least 2 labels; got {out}")
    if len(set(out)) != len(out):
        raise AuditInputError(f"labels contain duplicates: {out}")
    return out


def _where(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    """Name the rows under ``mask``: id and file:line (or index) of the first few."""
    mask = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    parts = []
    for i in idx[:_LISTED]:
        loc = df[_SOURCE_ROW].iat[i] if _SOURCE_ROW in df.columns else f"row {df.index[i]}"
        parts.append(f"id {df['id'].iat[i]!r} ({loc})" if "id" in df.columns else str(loc))
    more = f" and {idx.size - _LISTED} more" if idx.size > _LISTED else ""
    return f"{idx.size} row(s): " + ", ".join(parts) + more


def _missing(series: pd.Series) -> np.ndarray:
    text = series.astype(str).str.strip()
    return (series.isna() | text.eq("") | text.str.lower().isin(["nan", "none", "<na>"])).to_numpy()


def _prob_columns(df: pd.DataFrame) -> dict[str, str]:
    return {c[len(_PROB) :]: c for c in df.columns if c.startswith(_PROB)}


def check_predictions(
    predictions: pd.DataFrame,
    *,
    labels: Sequence[str] | None = None,
    group_cols: Sequence[str] = ("gender",),
    domain_cols: Sequence[str] = ("language", "modality"),
    by: Sequence[str] = (),
) -> tuple[pd.DataFrame, list[str], list[str], list[str]]:
    """Check a predictions table before an audit.

    Returns ``(table, labels, notes, warnings)``: a copy with ``y_pred`` derived from the probabilities
    when it is absent (argmax of ``prob_<label>``), the label set (given, or inferred and said so), notes
    on what was done, and warnings on what looks odd (probabilities not summing to 1, ``y_pred`` not their
    argmax). Raises :class:`AuditInputError` listing every fatal problem at once: missing
    columns, missing or unknown labels (with the rows), probability columns that name unknown labels, NaN or
    out-of-range probabilities (with the rows), missing run keys.
    """
    if not isinstance(predictions, pd.DataFrame):
        raise TypeError(f"predictions must be a pandas DataFrame; got {type(predictions).__name__}")
    df = predictions.reset_index(drop=True).copy()
    if len(df) == 0:
        raise AuditInputError("the predictions table has no rows")
    notes: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    probs = _prob_columns(df)

    needed = ["y_true", *group_cols, *domain_cols, *by]
    if "y_pred" not in df.columns and not probs:
        needed.insert(1, "y_pred")
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        hints = []
        if set(missing) & set(domain_cols):
            hints.append("choose the domain columns with --domain-cols / domain_cols=... ('' for none)")
        if set(missing) & set(group_cols):
            hints.append("name the sensitive columns with --group-cols / group_cols=...")
        if set(missing) & set(by):
            hints.append("name the run columns with --by / by=...")
        shown = [c for c in df.columns if c != _SOURCE_ROW]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise AuditInputError(f"missing column(s) {missing}; the table has {shown}{hint}")
    overlap = set(group_cols) & set(domain_cols)
    if overlap:
        raise AuditInputError(f"column(s) {sorted(overlap)} cannot be both sensitive and domain columns")

    if labels is None:
        seen = set(df["y_true"].dropna().astype(str))
        if "y_pred" in df.columns:
            seen |= set(df["y_pred"].dropna().astype(str))
        if probs and seen <= set(probs):
            labels = list(probs)
            notes.append(f"labels taken from the prob_* columns, in their order: {labels}")
        else:
            labels = sorted(seen | set(probs))
            notes.append(f"labels inferred from the data (sorted y_true, y_pred, prob_* values): {labels}")
    if len(labels) < 2:
        raise AuditInputError(f"need at least 2 labels to audit; found {labels}")

    extra_probs = sorted(set(probs) - set(labels))
    if extra_probs:
        errors.append(
            f"probability column(s) {[probs[x] for x in extra_probs]} name label(s) not in the label set "
            f"{labels}"
        )
    if probs and not extra_probs:
        values = df[list(probs.values())].apply(pd.to_numeric, errors="coerce")
        nan_rows = values.isna().any(axis=1).to_numpy()
        if nan_rows.any():
            cols = [c for c in values.columns if values[c].isna().any()]
            errors.append(
                f"NaN (or non-numeric) probabilities in {cols} in {_where(df, nan_rows)}; fix these rows or "
                "drop the prob_* columns (they are optional)"
            )
        bad_range = ((values < 0) | (values > 1)).any(axis=1).to_numpy()
        if bad_range.any():
            errors.append(f"probabilities outside [0, 1] in {_where(df, bad_range)}")
        absent = [lab for lab in labels if lab not in probs]
        if absent:
            warnings.append(f"no probability column for label(s) {absent}")
        elif not nan_rows.any() and not bad_range.any():
            off = np.abs(values.sum(axis=1).to_numpy() - 1) > 1e-3
            if off.any():
                warnings.append(f"probabilities do not sum to 1 (±0.001) in {_where(df, off)}")
            argmax = np.asarray([probs[lab] for lab in labels])[
                values[[probs[x] for x in labels]].to_numpy().argmax(1)
            ]
            argmax = np.array([c[len(_PROB) :] for c in argmax], dtype=object)
            if "y_pred" not in df.columns:
                df["y_pred"] = argmax
                notes.append("y_pred absent: taken as the argmax of the prob_* columns")
            else:
                differs = df["y_pred"].astype(str).to_numpy() != argmax
                if differs.any():
                    warnings.append(f"y_pred is not the argmax of the probabilities in {_where(df, differs)}")
    if "y_pred" not in df.columns:
        errors.append("no y_pred column, and y_pred cannot be derived from the probabilities (see above)")
        raise AuditInputError("; ".join(errors))

    for col in ("y_true", "y_pred"):
        miss = _missing(df[col])
        if miss.any():
            errors.append(f"missing {col} in {_where(df, miss)}")
        values = df[col].astype(str).str.strip()
        df[col] = values
        bad = ~miss & ~values.isin(labels).to_numpy()
        if bad.any():
            counts = values[bad].value_counts()
            shown = ", ".join(f"{k!r} ×{v}" for k, v in counts.head(10).items())
            errors.append(
                f"{col} holds label(s) not in the label set {labels}: {shown}; in {_where(df, bad)}"
            )
    if "gender" in group_cols:  # spellings of the two values, as in fairser.data.manifest (never guessed)
        raw = df["gender"]
        miss = _missing(raw)
        text = raw.astype(object).where(~miss, None)
        norm = text.map(
            lambda v: v if v is None else _GENDER_SPELLINGS.get(str(v).strip().lower(), str(v).strip())
        )
        changed = (text != norm) & ~miss
        if changed.any():
            pairs = sorted({f"{a!r} -> {b!r}" for a, b in zip(text[changed], norm[changed], strict=True)})
            notes.append(f"gender values normalised: {', '.join(pairs)}")
            df["gender"] = norm
    for col in by:
        miss = _missing(df[col])
        if miss.any():
            errors.append(f"missing run key {col!r} in {_where(df, miss)}")
    if errors:
        raise AuditInputError("invalid predictions table:\n- " + "\n- ".join(errors))
    return df, list(labels), notes, warnings


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


# ----------------------------------------------------------------------------------------------- frame


@dataclass
class AuditFrame:
    """One run audited for one sensitive attribute: a MetricFrame-like view of an :class:`Evaluation`.

    Like fairlearn's ``MetricFrame``: ``overall`` (Series over metrics), ``by_group`` (rows = domain ×
    group, columns = metrics), ``difference()`` / ``group_min()`` / ``group_max()``, and the uncertainty
    fairlearn lacks for multiclass: ``overall_ci``, ``by_group_ci``, ``difference_ci()``, ``p_values()``.
    The tidy tables stay available as ``evaluation``.
    """

    evaluation: Evaluation
    attribute: str
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return run_label(self.run)

    @property
    def domain_cols(self) -> list[str]:
        return self.evaluation.domain_cols

    @property
    def notes(self) -> list[str]:
        return self.evaluation.notes

    def _overall(self, column: str) -> pd.Series:
        return self.evaluation.overall.set_index("metric")[column].rename(column)

    @property
    def overall(self) -> pd.Series:
        """Every metric over all rows of the run."""
        return self._overall("value")

    @property
    def overall_ci(self) -> tuple[pd.Series, pd.Series]:
        """(lower, upper) bootstrap percentile CI of :attr:`overall`."""
        return self._overall("ci_low"), self._overall("ci_high")

    def _by_group(self, column: str) -> pd.DataFrame:
        keys = [*self.domain_cols, self.attribute]
        wide = self.evaluation.by_group.set_index([*keys, "metric"])[column].unstack("metric")
        return wide.reindex(columns=list(METRICS)).rename_axis(columns=None)

    @property
    def by_group(self) -> pd.DataFrame:
        """Metric values per (domain, group): rows ``(*domain_cols, attribute)``, columns metrics."""
        return self._by_group("value")

    @property
    def by_group_ci(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) bootstrap CI of :attr:`by_group`."""
        return self._by_group("ci_low"), self._by_group("ci_high")

    @property
    def by_domain(self) -> pd.DataFrame:
        """Metric values per domain (all groups together)."""
        frame = self.evaluation.by_domain
        index = self.domain_cols or None
        if index is None:
            return frame.set_index("metric")[["value"]].T.reset_index(drop=True).rename_axis(columns=None)
        wide = frame.set_index([*index, "metric"])["value"].unstack("metric")
        return wide.reindex(columns=list(METRICS)).rename_axis(columns=None)

    def _gaps(self, column: str, metric: str | None) -> pd.DataFrame:
        gaps = self.evaluation.gaps
        if metric is not None:
            if metric not in set(gaps["metric"]):
                raise KeyError(f"unknown metric {metric!r}; available: {list(GAP_METRICS)}")
            gaps = gaps[gaps["metric"] == metric]
        if not self.domain_cols:
            return gaps.set_index("metric")[[column]].T.reset_index(drop=True).rename_axis(columns=None)
        wide = gaps.set_index([*self.domain_cols, "metric"])[column].unstack("metric")
        order = [m for m in GAP_METRICS if m in wide.columns]
        return wide[order].rename_axis(columns=None)

    def difference(self, *, metric: str | None = None) -> pd.DataFrame:
        """Gap (max − min over groups; ``|male − female|`` for gender) per domain and metric, parity gaps
        (ΔSP, ΔEO, equalized odds) included."""
        return self._gaps("gap", metric)

    def signed_difference(self, *, metric: str | None = None) -> pd.DataFrame:
        """Signed gap ``M(second group) − M(first group)`` (``female − male``); ``NaN`` with > 2 groups."""
        return self._gaps("signed_gap", metric)

    def difference_ci(self, *, metric: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(lower, upper) bootstrap CI of :meth:`difference`."""
        return self._gaps("ci_low", metric), self._gaps("ci_high", metric)

    def p_values(self, *, metric: str | None = None) -> pd.DataFrame:
        """Permutation-test p-value of each gap (H0: group labels exchangeable between speakers)."""
        return self._gaps("p_value", metric)

    def group_min(self, *, metric: str | None = None) -> pd.DataFrame:
        """Worst group's value per domain and metric."""
        return self.evaluation.group_min(metric=metric)

    def group_max(self, *, metric: str | None = None) -> pd.DataFrame:
        """Best group's value per domain and metric."""
        return self.evaluation.group_max(metric=metric)

    @property
    def per_class(self) -> pd.DataFrame:
        """Per domain and class: per-group TPR/FPR/selection rate and their gaps with CIs."""
        return self.evaluation.per_class

    @property
    def summary(self) -> pd.DataFrame:
        """Per metric: mean gap over domains and worst-domain gap, with CIs and p-values."""
        return self.evaluation.summary

    def confusion(self, *, domain: Sequence[str] | None = None) -> dict[str, pd.DataFrame]:
        """Confusion matrix (rows = true, columns = predicted) per group, in one domain (default: all
        domains summed)."""
        frame = self.evaluation.confusion
        labels = self.evaluation.settings["labels"]
        if domain is not None:
            for col, value in zip(self.domain_cols, domain, strict=True):
                frame = frame[frame[col].astype(str) == str(value)]
        out = {}
        for group, sub in frame.groupby(self.attribute, sort=False):
            cm = sub.pivot_table(index="true", columns="pred", values="count", aggfunc="sum")
            out[str(group)] = cm.reindex(index=labels, columns=labels).fillna(0.0)
        return out

    def undefined(self) -> pd.DataFrame:
        """Every number that is ``NaN`` although it was asked for, with the reason from :mod:`fairser.metrics`.

        Columns ``table, domain, group, metric, undefined, reason`` (``undefined`` names the NaN fields).
        CIs are only listed when ``n_boot > 0`` and p-values when ``n_perm > 0``; signed gaps are left out
        (they do not exist with more than two groups nor for the parity gaps).
        """
        ev = self.evaluation
        boot, perm = ev.settings.get("n_boot", 0) > 0, ev.settings.get("n_perm", 0) > 0
        rows: list[dict[str, Any]] = []

        def scan(table: str, frame: pd.DataFrame, fields: list[str], metric_col: str | None, group: bool):
            for rec in frame.to_dict(orient="records"):
                nan = [f for f in fields if f in rec and _isnan(rec[f])]
                if not nan:
                    continue
                key = tuple(rec[c] for c in self.domain_cols) if self.domain_cols else ()
                rows.append(
                    {
                        "table": table,
                        "domain": " / ".join(map(str, key)) if key else "all",
                        "group": rec.get(self.attribute, "") if group else "",
                        "metric": rec.get(metric_col, "") if metric_col else "",
                        "undefined": ", ".join(nan),
                        "reason": rec.get("reason") or "(no reason given)",
                    }
                )

        ci = ["ci_low", "ci_high"] if boot else []
        scan("by_domain", ev.by_domain, ["value", *ci], "metric", False)
        scan("by_group", ev.by_group, ["value", *ci], "metric", True)
        scan("gaps", ev.gaps, ["gap", *ci, *(["p_value"] if perm else [])], "metric", False)
        per_class = ev.per_class.rename(columns={"class": "_class"})
        fields = [
            f"{k}_gap{s}"
            for k in ("tpr", "fpr", "sp")
            for s in ("", *(("_ci_low", "_ci_high") if boot else ()))
        ]
        scan("per_class", per_class, fields, "_class", False)
        out = pd.DataFrame(rows, columns=["table", "domain", "group", "metric", "undefined", "reason"])
        summary = ev.summary
        for rec in summary.to_dict(orient="records"):
            if _isnan(rec["mean_gap"]):
                out.loc[len(out)] = [
                    "summary",
                    "all",
                    "",
                    rec["metric"],
                    "mean_gap, worst_gap",
                    rec["reason"],
                ]
        return out


def _isnan(x: Any) -> bool:
    try:
        return x is None or x is pd.NA or (isinstance(x, float | np.floating) and math.isnan(x))
    except TypeError:
        return False


# ----------------------------------------------------------------------------------------------- audit


@dataclass
class Audit:
    """All runs × sensitive attributes of one audit, with the input warnings and where the data came from.

    Iterate over it for the :class:`AuditFrame` of each (run, attribute); :meth:`frame` picks one;
    :meth:`table` concatenates one tidy table over all frames (run columns and ``attribute`` first, the
    group column renamed ``group``); :meth:`write` saves the CSVs and ``audit.json``.
    """

    frames: list[AuditFrame]
    run_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    synthetic: bool = False

    def __iter__(self) -> Iterator[AuditFrame]:
        return iter(self.frames)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def attributes(self) -> list[str]:
        return list(dict.fromkeys(f.attribute for f in self.frames))

    def frame(self, *, attribute: str | None = None, **run: Any) -> AuditFrame:
        """The frame of one run (keys as in :attr:`run_columns`) and attribute (default: the first)."""
        attribute = attribute or self.attributes[0]
        hits = [
            f
            for f in self.frames
            if f.attribute == attribute and all(str(f.run.get(k)) == str(v) for k, v in run.items())
        ]
        if len(hits) != 1:
            runs = sorted({f.label for f in self.frames})
            raise KeyError(
                f"{len(hits)} frames match attribute={attribute!r} {run}; runs: {runs}; "
                f"attributes: {self.attributes}"
            )
        return hits[0]

    def table(self, name: str) -> pd.DataFrame:
        """Tidy table ``name`` (one of :data:`AUDIT_TABLES`, or ``undefined``) over every frame."""
        if name not in (*AUDIT_TABLES, "undefined"):
            raise KeyError(f"unknown table {name!r}; available: {[*AUDIT_TABLES, 'undefined']}")
        parts = []
        for f in self.frames:
            part = f.undefined() if name == "undefined" else getattr(f.evaluation, name).copy()
            if f.attribute in part.columns:
                part = part.rename(columns={f.attribute: "group"})
            for col in reversed([*self.run_columns, "attribute"]):
                value = f.attribute if col == "attribute" else f.run.get(col)
                part.insert(0, col, value)
            parts.append(part)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def undefined(self) -> pd.DataFrame:
        """Every undefined number of every frame, with its reason (see :meth:`AuditFrame.undefined`)."""
        return self.table("undefined")

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``<table>.csv`` for every tidy table, ``undefined.csv`` and ``audit.json``; returns the paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        for name in (*AUDIT_TABLES, "undefined"):
            paths[name] = out / f"{name}.csv"
            self.table(name).to_csv(paths[name], index=False)
        paths["audit"] = out / "audit.json"
        meta = {
            "format": _FORMAT,
            "source": self.source,
            "synthetic": self.synthetic,
            "settings": self.settings,
            "run_columns": self.run_columns,
            "attributes": self.attributes,
            "notes": self.notes,
            "warnings": self.warnings,
            "frames": [
                {"run": f.run, "attribute": f.attribute, "notes": f.notes, "settings": f.evaluation.settings}
                for f in self.frames
            ],
            "files": {k: p.name for k, p in paths.items()},
        }
        paths["audit"].write_text(json.dumps(_jsonable(meta), indent=2))
        return paths

    @classmethod
    def load(cls, path: str | Path) -> Audit:
        """Read an audit folder written by :meth:`write` back into an :class:`Audit`."""
        path = Path(path)
        meta_path = path / "audit.json" if path.is_dir() else path
        if not meta_path.is_file():
            raise FileNotFoundError(f"no audit.json in {path} (write one with `fairser audit ... --out DIR`)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{meta_path} is not a fairser audit (format {meta.get('format')!r})")
        folder = meta_path.parent
        tables = {
            name: pd.read_csv(folder / f"{name}.csv", keep_default_na=False, na_values=[""])
            for name in AUDIT_TABLES
        }
        run_cols = list(meta["run_columns"])
        frames = []
        for fm in meta["frames"]:
            settings = fm["settings"]
            parts = {}
            for name, table in tables.items():
                mask = table["attribute"].astype(str) == fm["attribute"] if "attribute" in table else True
                for col in run_cols:
                    mask &= table[col].astype(str) == str(fm["run"].get(col))
                part = (
                    table[mask]
                    .drop(columns=[*run_cols, "attribute"])
                    .rename(columns={"group": fm["attribute"]})
                )
                for col in settings["domain_cols"]:
                    if col in part.columns:
                        part[col] = part[col].astype(str)
                if fm["attribute"] in part.columns:
                    part[fm["attribute"]] = part[fm["attribute"]].astype(str)
                if name == "per_class":  # per-group columns of other attributes' groups are all empty here
                    other = [
                        c for c in part.columns if _group_column(c) and c not in _group_columns(settings)
                    ]
                    part = part.drop(columns=other)
                if "reason" in part.columns:
                    part["reason"] = (
                        part["reason"].astype(object).where(part["reason"].notna(), "").astype(str)
                    )
                parts[name] = part.reset_index(drop=True)
            ev = Evaluation(notes=list(fm["notes"]), settings=settings, **parts)
            frames.append(AuditFrame(evaluation=ev, attribute=fm["attribute"], run=dict(fm["run"])))
        return cls(
            frames=frames,
            run_columns=run_cols,
            notes=list(meta.get("notes", [])),
            warnings=list(meta["warnings"]),
            settings=meta["settings"],
            source=meta["source"],
            synthetic=bool(meta["synthetic"]),
        )

    def print_summary(self, *, console=None, max_detailed: int = 4) -> None:
        """Readable summary (rich tables): per domain for up to ``max_detailed`` frames, else one line each."""
        _print_audit(self, console=console, max_detailed=max_detailed)


_PER_GROUP = ("n", "tpr", "fpr", "sp")


def _group_columns(settings: dict[str, Any]) -> set[str]:
    return {f"{k}_{g}" for g in settings["groups"] for k in _PER_GROUP}


def _group_column(name: str) -> bool:
    """A per-group column of ``per_class`` (``tpr_female``), not a gap column (``tpr_gap_ci_low``)."""
    head, _, rest = name.partition("_")
    return head in _PER_GROUP and bool(rest) and not rest.startswith("gap")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _input_warnings(
    df: pd.DataFrame, *, attribute: str, domain_cols: list[str], speaker_col: str, min_samples: int
) -> list[str]:
    """Groups too small, with one speaker, or domains with one value of the attribute (named)."""
    out = []
    sens = np.where(_missing(df[attribute]), _UNKNOWN, df[attribute].astype(str).to_numpy())
    dom = np.full(len(df), "all", dtype=object)
    if domain_cols:  # a missing domain value is the domain value 'unknown', as in fairser.metrics
        parts = [np.where(_missing(df[c]), _UNKNOWN, df[c].astype(str).to_numpy()) for c in domain_cols]
        dom = np.array([" / ".join(vals) for vals in zip(*parts, strict=True)], dtype=object)
    frame = pd.DataFrame({"domain": dom, "group": sens})
    has_spk = speaker_col in df.columns
    if has_spk:
        frame["speaker"] = np.where(_missing(df[speaker_col]), None, df[speaker_col].astype(str).to_numpy())
    known = frame[frame["group"] != _UNKNOWN]
    for domain, sub in known.groupby("domain", sort=True):
        values = sorted(set(sub["group"]))
        if len(values) < 2:
            out.append(
                f"domain {domain}: only {attribute} {values[0]!r} ({len(sub)} rows): its {attribute} gaps are "
                "undefined"
            )
        for group, rows in sub.groupby("group", sort=True):
            if len(rows) < min_samples:
                out.append(
                    f"group {domain} / {attribute}={group}: {len(rows)} row(s) < min_samples={min_samples}: its "
                    "metrics are undefined and it is left out of the gaps"
                )
            elif has_spk and rows["speaker"].notna().all() and rows["speaker"].nunique() == 1:
                out.append(
                    f"group {domain} / {attribute}={group}: one speaker ({rows['speaker'].iat[0]}): no "
                    "speaker-level CI for it or the domain's gaps"
                )
    if len(known) == 0:
        out.append(f"no row has a known {attribute}: no group metrics or gaps")
    return out


def _by_hint(dup_rows: pd.DataFrame, keys: list[str], by_cols: list[str]) -> str:
    """Which columns tell the duplicated rows apart (candidates for ``by``)."""
    skip = {*keys, *by_cols, "y_true", "y_pred", "speaker", _SOURCE_ROW}
    cols = [c for c in dup_rows.columns if c not in skip and not c.startswith(_PROB)]
    varying = [c for c in cols if dup_rows.groupby(keys, dropna=False)[c].nunique(dropna=False).max() > 1]
    if varying:
        return f"columns that tell these rows apart: {varying}; add them with --by / by=[...]"
    return "no column tells these rows apart: remove the duplicates"


def _intersection(df: pd.DataFrame, cols: Sequence[str]) -> np.ndarray:
    missing = np.zeros(len(df), dtype=bool)
    for c in cols:
        missing |= _missing(df[c]) | (df[c].astype(str).str.strip() == _UNKNOWN).to_numpy()
    joined = df[list(cols)].astype(str).agg(lambda r: INTERSECTION_SEP.join(map(str, r)), axis=1).to_numpy()
    return np.where(missing, _UNKNOWN, joined)


def _detect_source(df: pd.DataFrame) -> tuple[str, bool]:
    """Data source text and whether the rows come from the built-in synthetic corpus."""
    from fairser.data.synth.generate import CORPUS_NAME

    source = df.attrs.get("source", "predictions table (in memory)")
    synthetic = False
    for f in df.attrs.get("files", []):
        bench = (
            Path(f).resolve().parents[2] / "benchmark.json" if len(Path(f).resolve().parents) > 2 else None
        )
        if bench is not None and bench.is_file():
            meta = json.loads(bench.read_text())
            synthetic |= bool(meta.get("synthetic"))
            source = f"{source} (benchmark data: {meta.get('source', '?')})"
            break
    if "corpus" in df.columns:
        corpora = sorted(set(df["corpus"].dropna().astype(str)))
        synthetic |= CORPUS_NAME in corpora
        source = f"{source}; corpus: {', '.join(corpora)}"
    return source, synthetic


def audit_predictions(
    predictions: pd.DataFrame | str | Path | Sequence[str | Path],
    *,
    labels: str | Sequence[str] | None = None,
    group_cols: Sequence[str] = ("gender",),
    domain_cols: Sequence[str] = ("language", "modality"),
    by: Sequence[str] | None = None,
    intersectional: bool = True,
    n_boot: int = 1000,
    n_perm: int = 1000,
    ci: float = 0.95,
    min_samples: int = 10,
    resample: Literal["speaker", "utterance"] = "speaker",
    speaker_col: str = "speaker",
    seed: int = 0,
    progress: bool = False,
) -> Audit:
    """Audit a predictions table: every metric and gap of METHODS.md §2 per run, domain and group.

    Parameters
    ----------
    predictions : DataFrame or path(s)
        One row per utterance: ``y_true``, ``y_pred`` (or ``prob_<label>`` columns to take the argmax of),
        the ``group_cols``, the ``domain_cols``; ``speaker`` and ``id`` when present. CSV paths are read with
        :func:`read_predictions` (a benchmark folder: all its ``runs/*/predictions.csv``).
    labels : str or sequence of str, optional
        Label set (``"meld7"``, ``"core4"``, ``"a,b,c"`` or a list). Default: inferred from the data.
    group_cols : sequence of str
        Sensitive attributes; each is audited on its own, and with two or more, their intersection too
        (values joined by :data:`INTERSECTION_SEP`, column ``"gender × age_band"``), unless
        ``intersectional=False``.
    domain_cols : sequence of str
        Columns whose combination is a domain (METHODS.md §1); ``()`` for none.
    by : sequence of str, optional
        Columns that identify a run; each run is audited separately (the metrics need one prediction per
        utterance). Default: those of :data:`RUN_COLUMNS` present; ``()`` for one run.
    n_boot, n_perm, ci, min_samples, resample, speaker_col, seed
        Passed to :func:`fairser.metrics.evaluate_predictions` (speaker-level cluster bootstrap and
        between-speaker permutation test by default; same seed, same numbers).
    progress : bool
        Show a progress bar over runs × attributes.

    Returns
    -------
    Audit
        One :class:`AuditFrame` per run and attribute, the input warnings, and the data source.

    Raises
    ------
    AuditInputError
        Missing columns, unknown or missing labels, bad probabilities, duplicate ids within a run (the
        message names the rows and suggests ``by``).
    """
    if not isinstance(predictions, pd.DataFrame):
        predictions = read_predictions(predictions)
    source, synthetic = _detect_source(predictions)
    group_cols, domain_cols = list(group_cols), list(domain_cols)
    if not group_cols:
        raise AuditInputError("group_cols is empty: name at least one sensitive column (e.g. gender)")
    by_cols = [c for c in RUN_COLUMNS if c in predictions.columns] if by is None else list(by)
    if by is None and "split" in by_cols and predictions["split"].nunique(dropna=False) == 1:
        by_cols.remove("split")  # one split: no need to name it in every run
    by_cols = [c for c in by_cols if c not in (*group_cols, *domain_cols)]
    df, label_list, notes, warnings = check_predictions(
        predictions, labels=resolve_labels(labels), group_cols=group_cols, domain_cols=domain_cols, by=by_cols
    )
    run_cols, runs = split_runs(df, by=by_cols)

    attributes = list(group_cols)
    if intersectional and len(group_cols) > 1:
        inter = INTERSECTION_SEP.join(group_cols)
        if inter in df.columns:
            raise AuditInputError(f"column {inter!r} exists already; rename it")
        df[inter] = _intersection(df, group_cols)
        attributes.append(inter)
        run_cols, runs = split_runs(df, by=by_cols)

    frames: list[AuditFrame] = []
    per_run: dict[str, list[str]] = {}  # warning -> runs it applies to (said once, not once per run)
    tasks = [(run, rows, attr) for run, rows in runs for attr in attributes]
    from fairser.progress import progress_bar

    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("auditing runs", total=len(tasks))
        for run, rows, attr in tasks:
            prefix = f"run {run_label(run)}: " if run_cols else ""
            if "id" in rows.columns:
                dup = rows.duplicated([*domain_cols, "id"], keep=False).to_numpy()
                if dup.any():
                    raise AuditInputError(
                        f"{prefix}the same utterance id occurs more than once within a domain in "
                        f"{_where(rows, dup)}: does the table hold several runs? Each run is audited "
                        f"separately; {_by_hint(rows[dup], [*domain_cols, 'id'], by_cols)}"
                    )
            for w in _input_warnings(
                rows,
                attribute=attr,
                domain_cols=domain_cols,
                speaker_col=speaker_col,
                min_samples=min_samples,
            ):
                per_run.setdefault(w, []).append(run_label(run))
            try:
                ev = evaluate_predictions(
                    rows.drop(columns=[_SOURCE_ROW], errors="ignore"),
                    labels=label_list,
                    sensitive=attr,
                    domain_cols=domain_cols,
                    n_boot=n_boot,
                    n_perm=n_perm,
                    ci=ci,
                    min_samples=min_samples,
                    resample=resample,
                    speaker_col=speaker_col,
                    seed=seed,
                )
            except ValueError as err:
                raise AuditInputError(f"{prefix}{err}") from None
            frames.append(AuditFrame(evaluation=ev, attribute=attr, run=run))
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
        "group_cols": group_cols,
        "domain_cols": domain_cols,
        "by": run_cols,
        "intersectional": intersectional,
        "n_boot": n_boot,
        "n_perm": n_perm,
        "ci": ci,
        "min_samples": min_samples,
        "resample": resample,
        "speaker_col": speaker_col,
        "seed": seed,
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


# ----------------------------------------------------------------------------------------------- printing


def _num(x: Any, digits: int = 3) -> str:
    return "–" if _isnan(x) else f"{float(x):.{digits}f}"


def _with_ci(value: Any, low: Any, high: Any) -> str:
    text = _num(value)
    if not _isnan(value) and not (_isnan(low) and _isnan(high)):
        text += f" [{_num(low)}, {_num(high)}]"
    return text


def _p(x: Any) -> str:
    return "–" if _isnan(x) else (f"{float(x):.3f}" + (" *" if float(x) < 0.05 else ""))


def _print_audit(audit: Audit, *, console=None, max_detailed: int = 4) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    ci = int(round(100 * audit.settings.get("ci", 0.95)))
    if audit.synthetic:
        console.print(
            "[bold reverse] SYNTHETIC DATA [/] numbers describe the built-in generator, not real speech"
        )
    console.print(f"[bold]Audit[/] of {audit.source}")
    if len(audit.frames) <= max_detailed:
        for f in audit.frames:
            _print_frame(f, console=console, ci=ci)
    else:
        table = Table(title=f"W-F1 gender gaps per run ({ci}% CI; * p < 0.05)", show_lines=False)
        for col in (
            "run",
            "attribute",
            "W-F1",
            "mean W-F1 gap",
            "p",
            "worst W-F1 gap (domain)",
            "p",
            "ΔEO mean",
            "undefined",
        ):
            table.add_column(col)
        for f in audit.frames:
            s = f.summary.set_index("metric")
            w, deo = s.loc["weighted_f1"], s.loc["deo_mean"]
            table.add_row(
                f.label,
                f.attribute,
                _num(f.overall["weighted_f1"]),
                _with_ci(w["mean_gap"], w["mean_gap_ci_low"], w["mean_gap_ci_high"]),
                _p(w["mean_gap_p_value"]),
                f"{_with_ci(w['worst_gap'], w['worst_gap_ci_low'], w['worst_gap_ci_high'])} ({w['worst_domain']})",
                _p(w["worst_gap_p_value"]),
                _num(deo["mean_gap"]),
                str(len(f.undefined())),
            )
        console.print(table)
    notes = list(dict.fromkeys([*audit.notes, *(n for f in audit.frames for n in f.notes)]))
    for note in notes:
        console.print(f"[dim]note:[/] {note}")
    for w in audit.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def _print_frame(f: AuditFrame, *, console, ci: int) -> None:
    from rich.table import Table

    ev = f.evaluation
    sens = f.attribute
    groups = ev.settings.get("groups", [])
    signed = f"signed ({groups[1]} − {groups[0]})" if len(groups) == 2 else "signed"
    table = Table(title=f"{f.label} — {sens}: W-F1 and its gap per domain ({ci}% CI; * p < 0.05)")
    for col in (
        "domain",
        "n (speakers)",
        "W-F1",
        "W-F1 gap",
        signed,
        "p",
        "ΔSP max",
        "ΔEO max",
        "undefined because",
    ):
        table.add_column(col, overflow="fold")
    dom = ev.by_domain[ev.by_domain["metric"] == "weighted_f1"].reset_index(drop=True)
    gaps = ev.gaps.set_index([*f.domain_cols, "metric"]) if f.domain_cols else ev.gaps.set_index("metric")
    for rec in dom.to_dict(orient="records"):
        key = tuple(rec[c] for c in f.domain_cols)

        def g(metric: str, key=key):
            return gaps.loc[(*key, metric)] if f.domain_cols else gaps.loc[metric]

        w, dsp, deo = g("weighted_f1"), g("dsp_max"), g("deo_max")
        spk = "" if _isnan(rec["n_speakers"]) else f" ({rec['n_speakers']})"
        table.add_row(
            " / ".join(map(str, key)) or "all",
            f"{rec['n']}{spk}",
            _with_ci(rec["value"], rec["ci_low"], rec["ci_high"]),
            _with_ci(w["gap"], w["ci_low"], w["ci_high"]),
            _with_ci(w["signed_gap"], w["signed_ci_low"], w["signed_ci_high"]),
            _p(w["p_value"]),
            _num(dsp["gap"]),
            _num(deo["gap"]),
            str(w["reason"] or ""),
        )
    console.print(table)
    s = f.summary.set_index("metric").loc["weighted_f1"]
    console.print(
        f"W-F1 overall {_with_ci(f.overall['weighted_f1'], *(c['weighted_f1'] for c in f.overall_ci))}; "
        f"mean {sens} gap over domains {_with_ci(s['mean_gap'], s['mean_gap_ci_low'], s['mean_gap_ci_high'])} "
        f"(p {_p(s['mean_gap_p_value'])}); worst domain {s['worst_domain']}: "
        f"{_with_ci(s['worst_gap'], s['worst_gap_ci_low'], s['worst_gap_ci_high'])} (p {_p(s['worst_gap_p_value'])})"
    )
    pc = f.per_class.dropna(subset=["tpr_gap"]).sort_values("tpr_gap", ascending=False).head(3)
    if len(pc):
        parts = []
        for rec in pc.to_dict(orient="records"):
            where = " / ".join(str(rec[c]) for c in f.domain_cols) or "all"
            rates = ", ".join(f"{gr} {_num(rec.get(f'tpr_{gr}'), 2)}" for gr in groups if f"tpr_{gr}" in rec)
            parts.append(
                f"{rec['class']} in {where}: {_with_ci(rec['tpr_gap'], rec['tpr_gap_ci_low'], rec['tpr_gap_ci_high'])}"
                f" ({rates})"
            )
        console.print("largest per-class TPR (recall) gaps: " + "; ".join(parts))
