"""Reading and checking a predictions table before an audit (``fairser audit``).

:func:`read_predictions` reads CSVs (keeping ``file:line`` of every row for messages),
:func:`check_predictions` checks the table and names every row, label or column that is wrong, and
:func:`input_warnings` names the groups that are too small, have one speaker, or the domains with one value
of the attribute. :class:`AuditInputError` is the one error a user sees.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fairser.errors import UserError
from fairser.grouping import INTERSECTION_SEP, UNKNOWN, value_names

__all__ = [
    "PROB",
    "SOURCE_ROW",
    "AuditInputError",
    "check_predictions",
    "detect_source",
    "input_warnings",
    "read_predictions",
    "resolve_labels",
    "where",
]

PROB = "prob_"
#: Column holding ``file:line`` of each row read from CSV, used in messages only.
SOURCE_ROW = "_source_row"
# Spellings of gender's values in user files, as in fairser.data.manifest (never guessed).
_GENDER_SPELLINGS = {
    "m": "male",
    "male": "male",
    "man": "male",
    "f": "female",
    "female": "female",
    "woman": "female",
    "u": UNKNOWN,
    "unknown": UNKNOWN,
}
_LISTED = 5


class AuditInputError(UserError):
    """The predictions table cannot be audited; the message names the columns, rows or groups concerned."""


def read_predictions(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """Read one or several predictions CSVs into one table (all columns as text, probabilities as numbers).

    A folder is read as a benchmark output folder: every ``runs/*/predictions.csv`` in it (of a cross-validated
    benchmark, the pooled out-of-fold runs ``*__pooled__*``, not their single folds). Each row keeps
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
            if any("__pooled__" in f.parent.name for f in found):  # cross-validated: the pooled runs
                found = [f for f in found if not re.search(r"__fold\d+__", f.parent.name)]
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
        df[SOURCE_ROW] = [f"{f}:{i + 2}" for i in range(len(df))]  # line 1 is the header
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    for col in df.columns:
        if col.startswith(PROB):
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


def where(df: pd.DataFrame, mask: np.ndarray | pd.Series) -> str:
    """Name the rows under ``mask``: id and file:line (or index) of the first few."""
    mask = np.asarray(mask, dtype=bool)
    idx = np.flatnonzero(mask)
    parts = []
    for i in idx[:_LISTED]:
        loc = df[SOURCE_ROW].iat[i] if SOURCE_ROW in df.columns else f"row {df.index[i]}"
        parts.append(f"id {df['id'].iat[i]!r} ({loc})" if "id" in df.columns else str(loc))
    more = f" and {idx.size - _LISTED} more" if idx.size > _LISTED else ""
    return f"{idx.size} row(s): " + ", ".join(parts) + more


def _missing(series: pd.Series) -> np.ndarray:
    text = series.astype(str).str.strip()
    return (series.isna() | text.eq("") | text.str.lower().isin(["nan", "none", "<na>"])).to_numpy()


def _prob_columns(df: pd.DataFrame) -> dict[str, str]:
    return {c[len(PROB) :]: c for c in df.columns if c.startswith(PROB)}


def check_predictions(
    predictions: pd.DataFrame,
    *,
    labels: Sequence[str] | None = None,
    sensitive: Sequence[str] = ("gender",),
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

    needed = ["y_true", *sensitive, *domain_cols, *by]
    if "y_pred" not in df.columns and not probs:
        needed.insert(1, "y_pred")
    missing = [c for c in dict.fromkeys(needed) if c not in df.columns]
    if missing:
        hints = []
        if set(missing) & set(domain_cols):
            hints.append("choose the domain columns with --domain-cols / domain_cols=... ('' for none)")
        if set(missing) & set(sensitive):
            hints.append("name the sensitive columns with --sensitive / sensitive=...")
        if set(missing) & set(by):
            hints.append("name the run columns with --by / by=...")
        shown = [c for c in df.columns if c != SOURCE_ROW]
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise AuditInputError(f"missing column(s) {missing}; the table has {shown}{hint}")
    overlap = set(sensitive) & set(domain_cols)
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
                f"NaN (or non-numeric) probabilities in {cols} in {where(df, nan_rows)}; fix these rows or "
                "drop the prob_* columns (they are optional)"
            )
        bad_range = ((values < 0) | (values > 1)).any(axis=1).to_numpy()
        if bad_range.any():
            errors.append(f"probabilities outside [0, 1] in {where(df, bad_range)}")
        absent = [lab for lab in labels if lab not in probs]
        if absent:
            warnings.append(f"no probability column for label(s) {absent}")
        elif not nan_rows.any() and not bad_range.any():
            off = np.abs(values.sum(axis=1).to_numpy() - 1) > 1e-3
            if off.any():
                warnings.append(f"probabilities do not sum to 1 (±0.001) in {where(df, off)}")
            argmax = np.asarray([probs[lab] for lab in labels])[
                values[[probs[x] for x in labels]].to_numpy().argmax(1)
            ]
            argmax = np.array([c[len(PROB) :] for c in argmax], dtype=object)
            if "y_pred" not in df.columns:
                df["y_pred"] = argmax
                notes.append("y_pred absent: taken as the argmax of the prob_* columns")
            else:
                differs = df["y_pred"].astype(str).to_numpy() != argmax
                if differs.any():
                    warnings.append(f"y_pred is not the argmax of the probabilities in {where(df, differs)}")
    if "y_pred" not in df.columns:
        errors.append("no y_pred column, and y_pred cannot be derived from the probabilities (see above)")
        raise AuditInputError("; ".join(errors))

    for col in ("y_true", "y_pred"):
        miss = _missing(df[col])
        if miss.any():
            errors.append(f"missing {col} in {where(df, miss)}")
        values = df[col].astype(str).str.strip()
        df[col] = values
        bad = ~miss & ~values.isin(labels).to_numpy()
        if bad.any():
            counts = values[bad].value_counts()
            shown = ", ".join(f"{k!r} ×{v}" for k, v in counts.head(10).items())
            errors.append(f"{col} holds label(s) not in the label set {labels}: {shown}; in {where(df, bad)}")
    if "gender" in sensitive:  # spellings of the two values, as in fairser.data.manifest (never guessed)
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
            errors.append(f"missing run key {col!r} in {where(df, miss)}")
    if errors:
        raise AuditInputError("invalid predictions table:\n- " + "\n- ".join(errors))
    return df, list(labels), notes, warnings


def input_warnings(
    df: pd.DataFrame, *, sensitive: Sequence[str], domain_cols: list[str], speaker_col: str, min_samples: int
) -> list[str]:
    """Groups too small, with one speaker, or domains with one value of the attribute (named).

    ``sensitive`` is the attribute's column, or several whose intersection is the attribute.
    """
    out = []
    attribute = INTERSECTION_SEP.join(sensitive)
    sens = value_names(df, sensitive)
    dom = np.full(len(df), "all", dtype=object)
    if domain_cols:  # a missing domain value is the domain value 'unknown', as in fairser.metrics
        parts = [np.where(_missing(df[c]), UNKNOWN, df[c].astype(str).to_numpy()) for c in domain_cols]
        dom = np.array([" / ".join(vals) for vals in zip(*parts, strict=True)], dtype=object)
    frame = pd.DataFrame({"domain": dom, "group": sens})
    has_spk = speaker_col in df.columns
    if has_spk:
        frame["speaker"] = np.where(_missing(df[speaker_col]), None, df[speaker_col].astype(str).to_numpy())
    known = frame[frame["group"] != UNKNOWN]
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


def detect_source(df: pd.DataFrame) -> tuple[str, bool]:
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
