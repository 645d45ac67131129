"""audformat databases (the format of audEERING's audb and of nkululeko), read as a generic corpus table.

An audformat database is a folder with ``db.yaml`` and its tables (Wagner et al., audformat documentation:
https://audeering.github.io/audformat/). :func:`read_audformat` asks the database for its emotion scheme
(the first scheme whose name contains ``emotion``) with every other scheme alongside (``Database.get``, which
follows a speaker scheme into its misc table, so a speaker's ``gender`` comes along), and adds the database's
language when it declares exactly one. The result is an ordinary table for
:func:`fairser.data.corpora.generic.load_generic` (``file`` is the audio path relative to the database folder).
Needs the optional extra ``fairser[audformat]``; only filewise annotations are read.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fairser.data.manifest import ManifestError

__all__ = ["is_audformat", "read_audformat"]


def is_audformat(folder: Path) -> bool:
    """Whether ``folder`` holds an audformat database header (``db.yaml``)."""
    return (Path(folder) / "db.yaml").is_file()


def _iso639_1(code: str) -> str:
    """``jpn`` -> ``ja`` (audformat stores ISO 639-3); a code without a two-letter form is kept."""
    try:
        from iso639 import Lang

        return Lang(code).pt1 or code
    except Exception:  # an unknown code is kept as written (validated later as a language tag)
        return code


def read_audformat(folder: str | Path) -> pd.DataFrame:
    """The filewise annotations of an audformat database as a table of strings (``file`` + one column per scheme)."""
    folder = Path(folder)
    try:
        import audformat
    except ImportError as err:
        raise ManifestError(
            "this folder is an audformat database, but audformat is not installed",
            where=str(folder / "db.yaml"),
            fix="pip install 'fairser[audformat]'",
        ) from err
    try:
        db = audformat.Database.load(str(folder), load_data=True)
    except Exception as err:  # audformat raises many types for a broken header/table
        raise ManifestError(
            f"cannot read the audformat database: {type(err).__name__}: {err}",
            where=str(folder / "db.yaml"),
            fix="check db.yaml and its table files (audformat.Database.load must open it)",
        ) from err
    schemes = list(db.schemes)
    emotion = [s for s in schemes if "emotion" in s.lower()]
    if not emotion:
        raise ManifestError(
            f"no emotion scheme (schemes: {schemes})",
            where=str(folder / "db.yaml"),
            fix="name the scheme holding the emotion labels 'emotion' (or '...emotion...')",
        )
    others = [s for s in schemes if s != emotion[0]]
    df = db.get(emotion[0], others, strict=False)
    if isinstance(df.index, pd.MultiIndex):
        raise ManifestError(
            "the emotion labels are segmented (file, start, end); only filewise annotations are read",
            where=str(folder / "db.yaml"),
            fix="export one label per file (e.g. audformat.utils.to_filewise_index), or write a CSV manifest",
        )
    df = df.rename(columns={emotion[0]: "emotion"}).reset_index()
    if "language" not in {c.lower() for c in df.columns} and len(db.languages) == 1:
        df["language"] = _iso639_1(db.languages[0])
    return df.astype("string").fillna("")
