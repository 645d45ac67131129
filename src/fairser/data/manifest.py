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
    "check_speaker_genders",
    "check_transcripts",
    "normalise_genders",
    "normalise_languages",
    "read_manifest",
    "read_table_file",
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
#: Spellings read as each gender (compared lower-cased and stripped; ``w``/``weiblich``/``frau`` are German).
GENDER_SPELLINGS: dict[str, str] = {
    **{
        k: "male"
        for k in ("male", "m", "man", "men", "boy", "masculine", "mann", "männlich", "maennlich", "h")
    },
    **{
        k: "female"
        for k in ("female", "f", "woman", "women", "girl", "feminine", "w", "frau", "weiblich", "femme")
    },
    **{k: "non-binary" for k in ("non-binary", "nonbinary", "non binary", "nb", "enby")},
    **{k: "unknown" for k in ("unknown", "", "unk", "na", "n/a", "nan", "none", "null", "?", "-", "u")},
}
_LANGUAGE_TAG = r"^[a-z]{2,3}(-[a-z0-9]{1,8})*$"
SPLITS: tuple[str, ...] = ("train", "valid", "test")
_MAX_LISTED = 10


class ManifestError(UserError):
    """A manifest is malformed; the message names the offending rows, values or files."""


def _rows(df: pd.DataFrame, mask: pd.Series, *, first_line: int | None = None) -> str:
    bad = df.loc[mask]
    if first_line is None:
        places = [f"row {i}" for i in bad.index[:_MAX_LISTED]]
    else:
        places = [f"line {i + first_line}" for i in bad.index[:_MAX_LISTED]]
    ids = bad["id"] if "id" in bad.columns else pd.Series([""] * len(bad), index=bad.index)
    shown = ", ".join(f"{p} (id={row_id!r})" for p, row_id in zip(places, ids, strict=False))
    more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return shown + more


def normalise_genders(values: pd.Series) -> tuple[pd.Series, dict[str, int]]:
    """Read gender spellings (:data:`GENDER_SPELLINGS`: ``M``, ``Female``, ``w``, ...) as :data:`GENDERS`.

    Returns the normalised values and, for every other value, how many rows had it: those rows become
    ``unknown`` (the caller says so), since a gender is never guessed.
    """
    raw = values.astype("string").fillna("").str.strip()
    mapped = raw.str.lower().map(GENDER_SPELLINGS)
    other = raw[mapped.isna()].value_counts().to_dict()
    return mapped.fillna("unknown").astype("string"), {str(k): int(v) for k, v in other.items()}


def normalise_languages(values: pd.Series) -> pd.Series:
    """Language tags lower-cased BCP-47 style (``UR`` -> ``ur``, ``en_US`` -> ``en-us``), stripped."""
    return values.astype("string").fillna("").str.strip().str.lower().str.replace("_", "-", regex=False)


def check_speaker_genders(df: pd.DataFrame, *, source: str = "manifest") -> None:
    """Refuse a speaker (``corpus``, ``speaker``) recorded with two different known genders.

    ``unknown`` next to one known gender is not a conflict. The error lists every conflicting speaker with
    its rows per gender.
    """
    known = df.loc[df["gender"].isin(("male", "female", "non-binary")), ["corpus", "speaker", "gender"]]
    counts = known.groupby(["corpus", "speaker"])["gender"].value_counts().unstack(fill_value=0)
    conflict = counts[(counts > 0).sum(axis=1) > 1]
    if conflict.empty:
        return
    shown = "; ".join(
        f"{corpus}/{speaker}: " + ", ".join(f"{g} {int(n)} rows" for g, n in row.items() if n)
        for (corpus, speaker), row in conflict.head(_MAX_LISTED).iterrows()
    )
    more = f" and {len(conflict) - _MAX_LISTED} more" if len(conflict) > _MAX_LISTED else ""
    raise ManifestError(
        f"{len(conflict)} speaker(s) recorded with more than one gender: {shown}{more}",
        where=source,
        fix="correct the gender column (one gender per speaker), or give the different people distinct speaker ids",
    )


def check_transcripts(df: pd.DataFrame, *, source: str = "manifest") -> None:
    """Refuse audio+text on utterances without a transcript (the text branch would read empty strings).

    The error counts the empty transcripts per corpus and names some of their ids.
    """
    empty = df["transcript"].astype("string").fillna("").str.strip() == ""
    if not empty.any():
        return
    per_corpus = df.loc[empty, "corpus"].value_counts()
    totals = df["corpus"].value_counts()
    counts = ", ".join(f"{c}: {n} of {totals[c]}" for c, n in per_corpus.items())
    raise ManifestError(
        f"modality audio+text needs a transcript for every utterance, but {int(empty.sum())} have none ({counts});"
        f" e.g. {_rows(df, empty)}",
        where=source,
        fix="drop 'audio+text' from `modalities` for this corpus, or import it with its transcript column"
        " (--columns transcript=COLUMN)",
    )


def validate_manifest(
    df: pd.DataFrame,
    *,
    root: str | Path | None = None,
    labels: Iterable[str] | None = None,
    check_files: bool = True,
    source: str = "manifest",
    first_line: int | None = None,
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
    first_line : int, optional
        File line of the first row (2 for a CSV with a header): errors then name lines, not row numbers.

    Raises
    ------
    ManifestError
        Missing columns, empty or duplicate ids, unknown gender/split values, malformed language tags, a
        speaker with two genders, labels outside ``labels``, or missing audio files, each with the rows
        (and files) concerned.
    """
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"missing column(s) {missing}; a manifest needs {list(MANIFEST_COLUMNS)} (it has {list(df.columns)})",
            where=source,
            fix="rename the columns, or import the file with `fairser data import generic FILE --columns"
            " audio_path=COLUMN,...`",
        )
    out = df.copy()
    out = out.reset_index(drop=True)
    for col in MANIFEST_COLUMNS:
        out[col] = out[col].astype("string").fillna("")
    out["transcript"] = out["transcript"].fillna("")
    raw_gender = out["gender"].str.strip()
    out["gender"] = raw_gender.str.lower().map(GENDER_SPELLINGS).fillna(raw_gender).astype("string")
    out["language"] = normalise_languages(out["language"])

    def rows(mask: pd.Series) -> str:
        return _rows(out, mask, first_line=first_line)

    for col in ("id", "emotion", "language", "speaker", "corpus", "split"):
        empty = out[col].str.strip() == ""
        if empty.any():
            raise ManifestError(
                f"empty {col!r} in {rows(empty)}", where=source, fix=f"fill in {col!r} for every row"
            )
    dup = out["id"].duplicated(keep=False)
    if dup.any():
        raise ManifestError(
            f"duplicate id(s) in {rows(dup)}", where=source, fix="give every utterance its own id"
        )
    bad_gender = ~out["gender"].isin(GENDERS)
    if bad_gender.any():
        values = sorted(set(out.loc[bad_gender, "gender"]))
        raise ManifestError(
            f"unknown gender value(s) {values} in {rows(bad_gender)}",
            where=source,
            fix=f"use one of {list(GENDERS)} (m/f/M/Female/w/... are read too); `fairser data import generic`"
            " reads any other value as unknown and counts it",
        )
    bad_lang = ~out["language"].str.match(_LANGUAGE_TAG)
    if bad_lang.any():
        values = sorted(set(out.loc[bad_lang, "language"]))
        raise ManifestError(
            f"language value(s) {values} are not language tags in {rows(bad_lang)}",
            where=source,
            fix="use a BCP-47 / ISO 639 code such as en, de, ja, ur or en-us",
        )
    bad_split = ~out["split"].isin(SPLITS)
    if bad_split.any():
        values = sorted(set(out.loc[bad_split, "split"]))
        raise ManifestError(
            f"unknown split value(s) {values} in {rows(bad_split)}",
            where=source,
            fix=f"use one of {list(SPLITS)}",
        )
    check_speaker_genders(out, source=source)
    if labels is not None:
        allowed = list(labels)
        bad_label = ~out["emotion"].isin(allowed)
        if bad_label.any():
            values = sorted(set(out.loc[bad_label, "emotion"]))
            raise ManifestError(
                f"emotion label(s) {values} are not in the target set {allowed} in {rows(bad_label)}",
                where=source,
                fix="map them onto the target set: `fairser data import generic FILE --label-map LABEL=TARGET,...`"
                " (common spellings such as angry/happy/sad are mapped by default)",
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
            raise ManifestError(
                f"{len(bad)} audio file(s) not found: {files}{more}",
                where=source,
                fix="fix audio_path (relative paths are read relative to the manifest's folder), or import with"
                " --skip-missing to drop and count those rows",
            )
    return out


def resolve_audio_paths(df: pd.DataFrame, *, root: str | Path | None) -> list[Path]:
    """Absolute audio paths of a manifest's rows (relative paths are taken relative to ``root``)."""
    base = Path(root) if root is not None else Path.cwd()
    return [p if p.is_absolute() else base / p for p in (Path(s) for s in df["audio_path"])]


def read_table_file(path: str | Path, *, sep: str = ",") -> pd.DataFrame:
    """Read a delimited text file as strings; an empty, non-UTF-8 or malformed file is a :class:`ManifestError`.

    UTF-8 (with or without a byte-order mark) and UTF-16 with a byte-order mark (what spreadsheet programs
    write as "Unicode text") are read.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("file not found", where=str(path), fix="check the path")
    head = path.open("rb").read(4)
    if not head:
        raise ManifestError("the file is empty (0 bytes)", where=str(path), fix="write the header and rows")
    encoding = "utf-16" if head[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    if encoding != "utf-16" and b"\x00" in path.open("rb").read(4096):
        raise ManifestError(
            "not UTF-8 text (NUL bytes: UTF-16 or UTF-32 without a byte-order mark?)",
            where=str(path),
            fix="save it as UTF-8, e.g. `iconv -f UTF-16LE -t UTF-8 in.csv > out.csv`",
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep, encoding=encoding)
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"not UTF-8 text (byte {err.start}: {err.reason})",
            where=str(path),
            fix="save the file as UTF-8 (or UTF-16 with a byte-order mark)",
        ) from err
    except pd.errors.EmptyDataError as err:
        raise ManifestError("no header row (the file holds only blank lines)", where=str(path)) from err
    except pd.errors.ParserError as err:
        raise ManifestError(
            f"not a valid {'tab' if sep == chr(9) else 'comma'}-separated table: {err}",
            where=str(path),
            fix="quote fields that hold the separator, and give every row as many fields as the header",
        ) from err
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_manifest(
    path: str | Path, *, check_files: bool = True, labels: Iterable[str] | None = None
) -> pd.DataFrame:
    """Read and validate a manifest CSV; relative audio paths are resolved against its folder."""
    path = Path(path)
    if path.is_dir():
        hint = f" ({path / 'manifest.csv'})" if (path / "manifest.csv").is_file() else ""
        raise ManifestError(
            "is a folder, not a CSV file",
            where=str(path),
            fix=f"give the manifest CSV in it{hint}, or import the folder with `fairser data import generic`",
        )
    if not path.is_file():
        raise ManifestError(
            "manifest not found",
            where=str(path),
            fix="check the path, or build one with `fairser data import` / `fairser data synth`",
        )
    df = read_table_file(path)
    out = validate_manifest(
        df, root=path.parent, labels=labels, check_files=check_files, source=str(path), first_line=2
    )
    out.attrs["root"] = str(path.parent.resolve())
    return out


def write_manifest(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a manifest CSV (canonical columns first, extras after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(MANIFEST_COLUMNS) + [c for c in df.columns if c not in MANIFEST_COLUMNS]
    df[cols].to_csv(path, index=False)
    return path
