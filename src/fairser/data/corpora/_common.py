"""Helpers shared by the corpus loaders: the import result, drop bookkeeping, file discovery, gender tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from fairser.data.manifest import GENDERS, MANIFEST_COLUMNS, ManifestError, validate_manifest

__all__ = [
    "AUDIO_SUFFIXES",
    "DropLog",
    "ImportResult",
    "GenderTable",
    "apply_gender_table",
    "find_audio_files",
    "read_gender_table",
]

#: Audio file types the loaders accept (the authors ship WAV; the shared test copies are FLAC).
AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac")
_MAX_LISTED = 10

GenderTable = str | Path | Mapping[str, str] | pd.DataFrame


class DropLog:
    """Rows or files a loader could not use, each with a reason.

    With ``strict=True`` any entry makes :meth:`check` raise a :class:`ManifestError` naming the files; with
    ``strict=False`` they are dropped and counted per reason.
    """

    def __init__(self, *, corpus: str, strict: bool) -> None:
        self.corpus = corpus
        self.strict = strict
        self.rows: list[dict[str, str]] = []

    def add(self, source: str | Path, reason: str, detail: str = "") -> None:
        self.rows.append({"source": str(source), "reason": reason, "detail": detail})

    def check(self, *, hint: str = "pass strict=False to drop these and count them") -> None:
        if not self.strict or not self.rows:
            return
        shown = "; ".join(
            f"{r['source']}: {r['reason']}" + (f" ({r['detail']})" if r["detail"] else "")
            for r in self.rows[:_MAX_LISTED]
        )
        more = f" and {len(self.rows) - _MAX_LISTED} more" if len(self.rows) > _MAX_LISTED else ""
        raise ManifestError(
            f"{len(self.rows)} unusable file(s)/row(s): {shown}{more}", where=self.corpus, fix=hint
        )

    def counts(self) -> dict[str, int]:
        return dict(Counter(r["reason"] for r in self.rows))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["source", "reason", "detail"], dtype="string")


@dataclass
class ImportResult:
    """A corpus turned into a manifest, with everything that was left out and why.

    Attributes
    ----------
    manifest : DataFrame
        Validated manifest (canonical columns of :mod:`fairser.data.manifest` plus corpus extras).
    dropped : dict
        Reason -> number of dropped files/rows (unparseable file names, unmapped labels, ...).
    dropped_rows : DataFrame
        One row per drop: ``source`` (file or CSV row), ``reason``, ``detail``.
    corpus : str
        Registry name of the corpus.
    target : str
        Label target the emotions are in (``meld7``, ``core4`` or ``original``).
    notes : list of str
        Decisions worth knowing (e.g. which split was used).
    official_split : bool
        Whether ``split`` holds the corpus's own split (else it is a placeholder or an assigned split).
    """

    manifest: pd.DataFrame
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_rows: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["source", "reason", "detail"], dtype="string")
    )
    corpus: str = ""
    target: str = "original"
    notes: list[str] = field(default_factory=list)
    official_split: bool = False

    def summary(self) -> pd.DataFrame:
        """Utterances per ``language`` x ``gender`` (rows) and ``emotion`` (columns), with a ``total`` column."""
        df = self.manifest
        if df.empty:
            return pd.DataFrame(columns=["total"])
        table = pd.crosstab([df["language"], df["gender"]], df["emotion"])
        table.columns = [str(c) for c in table.columns]
        table["total"] = table.sum(axis=1)
        return table

    def summary_text(self) -> str:
        """The summary as printable text: counts, speakers and unknown genders per split, and every drop reason."""
        df = self.manifest
        lines = [f"corpus {self.corpus!r}: {len(df)} utterances, labels {self.target!r}"]
        if not df.empty:
            n_spk = df.groupby("gender")["speaker"].nunique().to_dict()
            lines.append("speakers: " + ", ".join(f"{g} {n}" for g, n in sorted(n_spk.items())))
            unknown = int((df["gender"] == "unknown").sum())
            lines.append(f"unknown gender: {unknown} utterances ({unknown / len(df):.1%})")
            splits = df["split"].value_counts().to_dict()
            lines.append(
                "splits: " + ", ".join(f"{s} {splits.get(s, 0)}" for s in ("train", "valid", "test"))
            )
            lines.append("")
            lines.append(self.summary().to_string())
        total_dropped = sum(self.dropped.values())
        lines.append("")
        lines.append(f"dropped: {total_dropped}" + (" utterances:" if total_dropped else ""))
        if total_dropped:
            lines.append(f"  {'label':<16} {'count':>6}  why")
        for reason, n in sorted(self.dropped.items(), key=lambda kv: (-kv[1], kv[0])):
            rows = self.dropped_rows.loc[self.dropped_rows["reason"] == reason]
            if reason.startswith("label "):
                label = str(rows["detail"].iloc[0]) if len(rows) else "-"
                lines.append(f"  {label:<16} {n:>6}  {reason}")
            else:
                examples = rows["source"].unique()[:3]
                ex = f" (e.g. {', '.join(map(str, examples))})" if len(examples) else ""
                lines.append(f"  {'-':<16} {n:>6}  {reason}{ex}")
        for note in self.notes:
            lines.append(f"note: {note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary_text()


def find_audio_files(root: str | Path, *, suffixes: Iterable[str] = AUDIO_SUFFIXES) -> list[Path]:
    """All audio files under ``root`` (recursively, sorted), matching ``suffixes`` case-insensitively."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"corpus folder not found: {root}")
    wanted = {s.lower() for s in suffixes}
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in wanted and p.is_file())


def _norm_gender(value: str, *, source: str, key: str) -> str:
    g = str(value).strip().lower()
    g = {"m": "male", "f": "female", "": "unknown"}.get(g, g)
    if g not in GENDERS:
        raise ManifestError(f"{source}: gender {value!r} for {key!r} is not one of {list(GENDERS)} (or m/f)")
    return g


def read_gender_table(table: GenderTable, *, key_column: str = "speaker") -> dict[str, str]:
    """Read a speaker -> gender table (CSV path with ``speaker,gender`` columns, a DataFrame, or a mapping).

    Keys are kept as written; values are normalised to ``male``/``female``/``unknown`` (``m``/``f`` accepted).
    """
    if isinstance(table, Mapping):
        return {str(k): _norm_gender(v, source="gender table", key=str(k)) for k, v in table.items()}
    if isinstance(table, pd.DataFrame):
        df, source = table, "gender table"
    else:
        path = Path(table)
        if not path.is_file():
            raise ManifestError(f"gender table not found: {path}")
        df, source = pd.read_csv(path, dtype=str, keep_default_na=False), str(path)
    missing = [c for c in (key_column, "gender") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {missing}; a gender table needs {key_column!r} and 'gender'"
        )
    out: dict[str, str] = {}
    for key, gender in zip(df[key_column].astype(str), df["gender"].astype(str), strict=True):
        out[key] = _norm_gender(gender, source=source, key=key)
    return out


def apply_gender_table(manifest: pd.DataFrame, table: GenderTable, *, corpus: str) -> pd.DataFrame:
    """Fill ``unknown`` genders from a user table keyed by ``speaker``; a contradiction is an error.

    Used for corpora whose genders come from their documentation (EmoDB, RAVDESS, CREMA-D, generic files):
    a user table may complete them but never silently overrides them.
    """
    genders = read_gender_table(table)
    out = manifest.copy()
    looked_up = out["speaker"].map(genders)
    known = looked_up.notna() & (looked_up != "unknown")
    conflict = known & (out["gender"] != "unknown") & (out["gender"] != looked_up)
    if conflict.any():
        bad = out.loc[conflict, ["speaker", "gender"]].drop_duplicates("speaker").head(_MAX_LISTED)
        pairs = ", ".join(
            f"{s} (corpus: {g}, table: {genders[s]})"
            for s, g in zip(bad["speaker"], bad["gender"], strict=True)
        )
        raise ManifestError(f"{corpus}: the gender table contradicts the corpus for speaker(s) {pairs}")
    fill = known & (out["gender"] == "unknown")
    out.loc[fill, "gender"] = looked_up[fill]
    return out


def finish(
    df: pd.DataFrame, *, extras: Iterable[str] = (), source: str, check_files: bool = True
) -> pd.DataFrame:
    """Order columns canonically (extras after), use string dtype and validate (:func:`validate_manifest`)."""
    cols = list(MANIFEST_COLUMNS) + [c for c in extras if c not in MANIFEST_COLUMNS]
    missing = [c for c in cols if c not in df.columns]
    if missing:  # pragma: no cover - a loader bug, not user input
        raise AssertionError(f"loader forgot columns {missing}")
    out = df[cols].astype("string").reset_index(drop=True)
    return validate_manifest(out, check_files=check_files, source=source)
