"""The manifest: one validated table, one row per utterance (METHODS.md §1, DESIGN.md "Data flow").

Every corpus loader produces this table and every later stage reads only this table. Columns:

============  =====================================================================================
id            unique utterance id (string)
audio_path    path to the audio file, relative to the manifest's folder or absolute
transcript    the words spoken (may be empty when a corpus has none)
emotion       emotion label in the *target* label set (see :mod:`fairser.data.labels`)
gender        ``male``, ``female``, ``non-binary`` or ``unknown`` (never guessed: unknown stays unknown)
language      ISO 639-1 code, e.g. ``en``, ``de``, ``ja``
speaker       speaker id, unique within the corpus
corpus        corpus name, e.g. ``synthetic``, ``emodb``
split         ``train``, ``valid`` or ``test``
============  =====================================================================================

Extra columns are kept untouched (e.g. a corpus's original label in ``emotion_original``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from fairser.errors import UserError

__all__ = [
    "GENDERS",
    "MANIFEST_COLUMNS",
    "SPLITS",
    "ManifestError",
    "read_manifest",
    "resolve_audio_paths",
    "validate_manifest",
    "write_manifest",
]

MANIFEST_COLUMNS: tuple[str, ...] = (
    "id",
    "audio_path",
    "transcript",
    "emotion",
    "gender",
    "language",
    "speaker",
    "corpus",
    "split",
)
#: Gender values a manifest may hold (``m``/``f``/``nonbinary``/``nb`` are read as their full spelling). Any
#: other value is refused, to catch typos; another attribute with any values goes in a column of its own.
GENDERS: tuple[str, ...] = ("male", "female", "non-binary", "unknown")
_GENDER_SPELLINGS = {
    "": "unknown",
    "m": "male",
    "f": "female",
    "nonbinary": "non-binary",
    "non binary": "non-binary",
    "nb": "non-binary",
}
SPLITS: tuple[str, ...] = ("train", "valid", "test")
_MAX_LISTED = 10


class ManifestError(UserError):
    """A manifest is malformed; the message names the offending rows, values or files."""


def _rows(df: pd.DataFrame, mask: pd.Series) -> str:
    bad = df.loc[mask]
    shown = ", ".join(
        f"row {i} (id={row_id!r})" for i, row_id in zip(bad.index[:_MAX_LISTED], bad["id"], strict=False)
    )
    more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return shown + more


def validate_manifest(
    df: pd.DataFrame,
    *,
    root: str | Path | None = None,
    labels: Iterable[str] | None = None,
    check_files: bool = True,
    source: str = "manifest",
) -> pd.DataFrame:
    """Check a manifest and return a normalised copy.

    Parameters
    ----------
    df : DataFrame
        The table to check.
    root : path, optional
        Folder that relative ``audio_path`` values are relative to (needed when ``check_files``).
    labels : iterable of str, optional
        The allowed emotion labels; any other label is an error naming its rows.
    check_files : bool
        Whether every ``audio_path`` must exist on disk.
    source : str
        Name used in error messages (e.g. the manifest's file name).

    Raises
    ------
    ManifestError
        Missing columns, empty or duplicate ids, unknown gender/split values, labels outside ``labels``,
        or missing audio files, each with the rows (and files) concerned.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{source}: missing column(s) {missing}; required columns are {list(MANIFEST_COLUMNS)}"
        )
    out = df.copy()
    out = out.reset_index(drop=True)
    for col in MANIFEST_COLUMNS:
        out[col] = out[col].astype("string").fillna("")
    out["transcript"] = out["transcript"].fillna("")
    out["gender"] = out["gender"].str.strip().str.lower().replace(_GENDER_SPELLINGS)

    for col in ("id", "emotion", "language", "speaker", "corpus", "split"):
        empty = out[col].str.strip() == ""
        if empty.any():
            raise ManifestError(f"{source}: empty {col!r} in {_rows(out, empty)}")
    dup = out["id"].duplicated(keep=False)
    if dup.any():
        raise ManifestError(f"{source}: duplicate id(s) in {_rows(out, dup)}")
    bad_gender = ~out["gender"].isin(GENDERS)
    if bad_gender.any():
        values = sorted(set(out.loc[bad_gender, "gender"]))
        raise ManifestError(
            f"{source}: unknown gender value(s) {values} (allowed {list(GENDERS)}) in {_rows(out, bad_gender)}"
        )
    bad_split = ~out["split"].isin(SPLITS)
    if bad_split.any():
        values = sorted(set(out.loc[bad_split, "split"]))
        raise ManifestError(
            f"{source}: unknown split value(s) {values} (allowed {list(SPLITS)}) in {_rows(out, bad_split)}"
        )
    if labels is not None:
        allowed = list(labels)
        bad_label = ~out["emotion"].isin(allowed)
        if bad_label.any():
            values = sorted(set(out.loc[bad_label, "emotion"]))
            raise ManifestError(
                f"{source}: emotion label(s) {values} are not in the target set {allowed} in {_rows(out, bad_label)};"
                " map them with a label map (fairser.data.labels) first"
            )
    if check_files:
        paths = resolve_audio_paths(out, root=root)
        exists = pd.Series([p.is_file() for p in paths], index=out.index)
        if not exists.all():
            bad = out.loc[~exists]
            files = ", ".join(
                f"{rid!r}: {p}"
                for rid, p in zip(
                    bad["id"][:_MAX_LISTED], [paths[i] for i in bad.index[:_MAX_LISTED]], strict=False
                )
            )
            more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            raise ManifestError(f"{source}: {len(bad)} audio file(s) not found: {files}{more}")
    return out


def resolve_audio_paths(df: pd.DataFrame, *, root: str | Path | None) -> list[Path]:
    """Absolute audio paths of a manifest's rows (relative paths are taken relative to ``root``)."""
    base = Path(root) if root is not None else Path.cwd()
    return [p if p.is_absolute() else base / p for p in (Path(s) for s in df["audio_path"])]


def read_csv_file(path: str | Path) -> pd.DataFrame:
    """A CSV as text columns; an empty, non-UTF-8 or malformed file is a :class:`ManifestError` naming it."""
    path = Path(path)
    if path.is_dir():
        raise ManifestError("is a folder, not a CSV file", where=str(path), fix="give the manifest CSV in it")
    with open(path, "rb") as f:
        head = f.read(4096)
    if b"\x00" in head:  # UTF-16 / UTF-32 text (with or without a byte-order mark)
        raise ManifestError(
            "not UTF-8 text (NUL bytes: UTF-16 or UTF-32?)",
            where=str(path),
            fix="save it as UTF-8, e.g. `iconv -f UTF-16 -t UTF-8 in.csv > out.csv`",
        )
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ManifestError(
            "the file is empty (0 bytes or no header)", where=str(path), fix="write a header line and rows"
        ) from None
    except UnicodeDecodeError as e:
        raise ManifestError(
            f"not UTF-8 text ({e.reason}; a legacy encoding such as Latin-1 or cp1252?)",
            where=str(path),
            fix="save it as UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 in.csv > out.csv`",
        ) from None
    except pd.errors.ParserError as e:
        raise ManifestError(
            f"not a readable CSV: {e}", where=str(path), fix="check its quoting and delimiters"
        ) from None


def read_manifest(
    path: str | Path, *, check_files: bool = True, labels: Iterable[str] | None = None
) -> pd.DataFrame:
    """Read and validate a manifest CSV; relative audio paths are resolved against its folder."""
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest not found: {path}")
    df = read_csv_file(path)
    out = validate_manifest(df, root=path.parent, labels=labels, check_files=check_files, source=str(path))
    out.attrs["root"] = str(path.parent.resolve())
    return out


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest CSV (canonical columns first, extras after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(MANIFEST_COLUMNS) + [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df[cols].to_csv(path, index=False)
    return path
