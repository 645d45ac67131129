"""Any other corpus, as people keep it: a folder or a table file (CSV/TSV/JSONL), an audformat database or a
Hugging Face ``datasets`` folder, read through one path.

What is read
------------
``path`` may be

- a table file (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson``, ``.json`` array of records);
- a folder: an audformat database (``db.yaml``, :mod:`fairser.data.corpora.audformat_db`), a Hugging Face
  dataset saved with ``save_to_disk`` or as parquet files (:mod:`fairser.data.corpora.hf_dataset`), else the
  folder's ``manifest.csv``, else its only ``*.csv``/``*.tsv``/``*.jsonl`` (several: an error listing them).
  Which file was chosen is written in the import's notes.

Columns
-------
A mapping goes from a canonical manifest column (:data:`fairser.data.manifest.MANIFEST_COLUMNS`) to a column of
the file or a constant:

- ``"emotion": "label"`` reads the file's ``label`` column;
- ``"language": "=fr"`` is the constant ``fr`` (a leading ``=`` always means a constant);
- for ``language``, ``corpus``, ``gender``, ``split`` and ``transcript`` a value that is not a column of the
  file is taken as a constant too (``"language": "fr"``), since such columns are often one value per corpus;
  for the other columns a value that is not a column is an error, so a typo is never silently a constant.

Canonical columns left out of the mapping are found by their common names (:data:`COLUMN_SYNONYMS`, compared
case-insensitively: ``path``/``file``/``wav`` for ``audio_path``, ``text``/``transcription`` for
``transcript``, ``label`` for ``emotion``, ``sex`` for ``gender``, ``lang``/``locale`` for ``language``, ...);
every column so found is named in the notes. Otherwise ``transcript`` is empty, ``gender`` is ``unknown``,
``corpus`` is the name of the corpus folder (the folder given, or the table file's folder), ``id`` is
``corpus/`` + the audio path relative to the corpus folder (without its suffix), and ``split`` is ``train``
(no official split; one is assigned later). ``emotion``, ``speaker``, ``language`` and ``audio_path`` must
come from somewhere.

Values
------
Gender spellings (``M``, ``Female``, ``w``, ``Frau``, ...; :data:`fairser.data.manifest.GENDER_SPELLINGS`)
are read as ``male``/``female``/``non-binary``; any other value becomes ``unknown`` and is counted in the
notes. Language tags are lower-cased (``UR`` -> ``ur``, ``en_US`` -> ``en-us``). Relative audio paths are
taken relative to ``audio_root`` (default: the corpus folder) and written out absolute. Every other column of
the file is kept as an extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, ImportResult, finish
from fairser.data.manifest import (
    MANIFEST_COLUMNS,
    ManifestError,
    normalise_genders,
    normalise_languages,
    read_table_file,
)

__all__ = ["COLUMN_SYNONYMS", "CONSTANT_COLUMNS", "find_table", "load_generic", "parse_pairs", "read_table"]

#: Canonical columns whose mapping value may be a bare constant (no leading ``=``).
CONSTANT_COLUMNS: tuple[str, ...] = ("language", "corpus", "gender", "split", "transcript")
_REQUIRED = ("emotion", "speaker", "language", "audio_path")
_SPLIT_ALIASES = {"dev": "valid", "val": "valid", "validation": "valid", "training": "train", "eval": "test"}
_TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")

#: Common names of each canonical column, in order of preference (compared lower-cased).
COLUMN_SYNONYMS: dict[str, tuple[str, ...]] = {
    "id": ("id", "utt_id", "utterance_id", "uid", "utt"),
    "audio_path": (
        "audio_path",
        "path",
        "file",
        "filename",
        "file_name",
        "filepath",
        "file_path",
        "audio",
        "audio_file",
        "wav",
        "wav_path",
    ),
    "transcript": ("transcript", "text", "transcription", "sentence", "utterance", "words"),
    "emotion": ("emotion", "label", "emotion_label", "emo", "category"),
    "gender": ("gender", "sex", "speaker_gender"),
    "language": ("language", "lang", "locale", "language_code"),
    "speaker": ("speaker", "speaker_id", "spk", "spk_id", "actor", "speaker_name"),
    "corpus": ("corpus", "dataset", "database"),
    "split": ("split", "set", "partition", "subset"),
}


def parse_pairs(text: str | None, *, option: str) -> dict[str, str]:
    """``"a=b,c=d"`` -> ``{"a": "b", "c": "d"}`` (the CLI's ``--columns`` and ``--label-map``).

    An empty right-hand side is kept (``"calm="``: drop the label). A pair without ``=`` is a
    :class:`ManifestError` naming it.
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise ManifestError(
                f"{part.strip()!r} is not a NAME=VALUE pair",
                where=option,
                fix=f"write {option} a=b,c=d (comma-separated pairs)",
            )
        key, value = part.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def find_table(folder: Path) -> tuple[Path, str]:
    """The table file of a corpus folder and a note saying why it was chosen.

    ``manifest.csv`` (or ``.tsv``/``.jsonl``) if there is one, else the folder's only table file; several
    candidates or none is a :class:`ManifestError` listing what was found.
    """
    for name in ("manifest.csv", "manifest.tsv", "manifest.jsonl"):
        if (folder / name).is_file():
            return folder / name, f"read {folder / name} (the folder's {name})"
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _TABLE_SUFFIXES)
    if len(found) == 1:
        return found[0], f"read {found[0]} (the folder's only table file)"
    if not found:
        raise ManifestError(
            "no manifest.csv and no *.csv / *.tsv / *.jsonl table in the folder (nor db.yaml of an audformat"
            " database, nor a Hugging Face dataset)",
            where=str(folder),
            fix="give the table file itself: fairser data import generic FOLDER/FILE.csv",
        )
    raise ManifestError(
        f"{len(found)} table files, which one describes the corpus? {[p.name for p in found]}",
        where=str(folder),
        fix=f"give the file itself, e.g. fairser data import generic {found[0]}",
    )


def read_table(path: str | Path, *, sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV (by extension, or ``sep``) or JSON-lines file as strings."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest file not found", where=str(path), fix="check the path")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        if path.stat().st_size == 0:
            raise ManifestError(
                "the file is empty (0 bytes)", where=str(path), fix="write one JSON record per line"
            )
        try:
            df = pd.read_json(path, lines=suffix != ".json", dtype=False, orient="records")
        except (ValueError, UnicodeDecodeError) as err:
            raise ManifestError(
                f"not valid JSON{' lines' if suffix != '.json' else ''} (UTF-8): {err}",
                where=str(path),
                fix="write one JSON object per line, in UTF-8",
            ) from err
        df = df.astype("string").fillna("")
        df.columns = [str(c).strip() for c in df.columns]
        return df
    if suffix in (".csv", ".tsv", ".txt") or sep is not None:
        return read_table_file(path, sep=sep or ("\t" if suffix == ".tsv" else ","))
    raise ManifestError(
        f"unknown manifest format {suffix!r}", where=str(path), fix="use .csv, .tsv, .jsonl or .json"
    )


def _orient(columns: Mapping[str, str], df: pd.DataFrame) -> dict[str, str]:
    """Accept ``canonical: file column`` (YAML) and ``file column: canonical`` (``--columns path=audio_path``).

    The side that is a canonical column name is the canonical one; when both are, the left is.
    """
    out: dict[str, str] = {}
    for key, value in columns.items():
        key, value = str(key), str(value)
        if key not in MANIFEST_COLUMNS and value in MANIFEST_COLUMNS:
            key, value = value, key
        out[key] = value
    return out


def _resolve(
    columns: Mapping[str, str], df: pd.DataFrame, source: str, notes: list[str]
) -> dict[str, tuple[str, str]]:
    """canonical column -> ("column", name) | ("const", value)."""
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(
            f"the column mapping names {unknown}, which are neither canonical columns nor mapped onto one",
            where=f"{source} (columns)",
            fix=f"pair each file column with one of {list(MANIFEST_COLUMNS)}, e.g. --columns path=audio_path",
        )
    lower = {str(c).lower(): c for c in df.columns}
    spec: dict[str, tuple[str, str]] = {}
    for canon in MANIFEST_COLUMNS:
        if canon in columns:
            value = str(columns[canon])
            if value.startswith("="):
                spec[canon] = ("const", value[1:])
            elif value in df.columns:
                spec[canon] = ("column", value)
            elif canon in CONSTANT_COLUMNS:
                spec[canon] = ("const", value)
            else:
                raise ManifestError(
                    f"column {value!r} (mapped to {canon!r}) not found; file columns are {list(df.columns)}",
                    where=source,
                    fix="fix the column name, or write '=value' for a constant",
                )
            continue
        taken = {v for kind, v in spec.values() if kind == "column"} | set(columns.values())
        for name in COLUMN_SYNONYMS[canon]:
            col = lower.get(name)
            if col is not None and col not in taken:
                spec[canon] = ("column", col)
                if col != canon:
                    notes.append(f"column {col!r} read as {canon!r}")
                break
    missing = [c for c in _REQUIRED if c not in spec]
    if missing:
        examples = {
            "audio_path": "FILECOL=audio_path",
            "language": "language=ja",
            "emotion": "FILECOL=emotion",
        }
        fix = ",".join(examples.get(c, f"FILECOL={c}") for c in missing)
        raise ManifestError(
            f"no column for {missing} (file columns are {list(df.columns)})",
            where=source,
            fix=f"name them: --columns {fix} (YAML: options: {{columns: {{canonical: file column}}}})",
        )
    return spec


def _read_any(
    path: Path, *, sep: str | None, notes: list[str], audio_dir: str | Path | None = None
) -> tuple[pd.DataFrame, Path, str]:
    """The raw table, the corpus folder (audio paths are relative to it) and the source name for messages."""
    if not path.exists():
        raise ManifestError(
            "corpus path not found", where=str(path), fix="give the corpus folder or its manifest file"
        )
    if path.is_dir():
        from fairser.data.corpora.audformat_db import is_audformat, read_audformat
        from fairser.data.corpora.hf_dataset import is_hf_dataset, read_hf_dataset

        if is_audformat(path):
            notes.append(f"read the audformat database {path}")
            return read_audformat(path), path, str(path / "db.yaml")
        if is_hf_dataset(path):
            notes.append(f"read the Hugging Face dataset {path}")
            return read_hf_dataset(path, audio_dir=audio_dir), path, str(path)
        table, why = find_table(path)
        notes.append(why)
        return read_table(table, sep=sep), path, str(table)
    return read_table(path, sep=sep), path.parent, str(path)


def load_generic(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    corpus: str | None = None,
    audio_root: str | Path | None = None,
    check_files: bool = True,
    strict: bool = True,
    sep: str | None = None,
    audio_dir: str | Path | None = None,
) -> ImportResult:
    """Read a corpus described by a table file, a folder, an audformat database or a Hugging Face dataset.

    Parameters
    ----------
    path : path
        A table file, or a folder (see the module docstring for what is looked for).
    columns : mapping, optional
        Canonical column <-> file column or constant (see the module docstring; either way round).
    corpus : str, optional
        Corpus name (default: the mapping's ``corpus``, a ``corpus`` column, else the corpus folder's name).
    audio_root : path, optional
        Folder relative audio paths are relative to (default: the corpus folder).
    check_files : bool
        Whether audio files must exist (use ``False`` for a text-only corpus with empty ``audio_path``).
    strict : bool
        If true, a missing audio file is an error naming it; if false its row is dropped and counted.
    sep : str, optional
        Field separator for delimited text files (default: by extension).
    audio_dir : path, optional
        Hugging Face datasets: where embedded audio is written out (default ``data/<folder name>_audio``).

    Returns
    -------
    ImportResult
        Labels as written in the file (``import_corpus`` maps them); decisions in ``.notes``.
    """
    path = Path(path)
    notes: list[str] = []
    raw, folder, source = _read_any(path, sep=sep, notes=notes, audio_dir=audio_dir)
    columns = _orient(dict(columns or {}), raw)
    if corpus is not None:
        columns["corpus"] = "=" + corpus
    spec = _resolve(columns, raw, source, notes)
    default_name = folder.resolve().name or "corpus"
    official = "split" in spec
    out = pd.DataFrame(index=raw.index)
    for canon, (kind, value) in spec.items():
        out[canon] = raw[value].astype("string").fillna("").str.strip() if kind == "column" else value
    if "transcript" not in out:
        out["transcript"] = ""
        notes.append("no transcript column: transcripts are empty (modality audio+text is refused)")
    if "gender" not in out:
        out["gender"] = "unknown"
        notes.append("no gender column: every gender is unknown")
    else:
        out["gender"], other = normalise_genders(out["gender"])
        if other:
            n = sum(other.values())
            shown = ", ".join(f"{v!r} {c}" for v, c in sorted(other.items(), key=lambda kv: -kv[1])[:10])
            notes.append(f"{n} utterance(s) with gender values read as unknown: {shown}")
    out["language"] = normalise_languages(out["language"])
    if "corpus" not in out:
        out["corpus"] = default_name
    if "split" not in out:
        out["split"] = "train"
        notes.append("no split column: split is 'train' until one is assigned")
    else:
        out["split"] = out["split"].str.lower().replace(_SPLIT_ALIASES)

    base = Path(audio_root) if audio_root is not None else folder
    rel = out["audio_path"].fillna("")
    has_audio = rel.str.len() > 0
    absolute = [Path(os.path.abspath(p if p.is_absolute() else base / p)) for p in map(Path, rel[has_audio])]
    if "id" not in out:
        root = Path(os.path.abspath(folder))
        ids = []
        for p in absolute:
            try:
                ids.append(p.relative_to(root).with_suffix("").as_posix())
            except ValueError:
                ids.append(p.with_suffix("").as_posix().lstrip("/"))
        out["id"] = out["corpus"] + "/" + pd.Series(out.index.astype(str), index=out.index)
        out.loc[has_audio, "id"] = (
            out.loc[has_audio, "corpus"] + "/" + pd.Series(ids, index=out.index[has_audio])
        )
    out.loc[has_audio, "audio_path"] = [str(p) for p in absolute]

    drops = DropLog(corpus=str(out["corpus"].iloc[0]) if len(out) else default_name, strict=strict)
    keep = pd.Series(True, index=out.index)
    if check_files:
        for i, p in zip(out.index, out["audio_path"], strict=True):
            if not p or not Path(p).is_file():
                drops.add(p or f"{source} row {i}", "audio file missing", f"id {out.at[i, 'id']}")
                keep[i] = False
        drops.check(
            hint="fix audio_path (relative to the corpus folder, or set audio_root), or import with --no-strict"
            " (YAML options: {strict: false}) to drop those rows and count them"
        )

    used = {value for kind, value in spec.values() if kind == "column"}
    extras = []
    for col in raw.columns:
        if col in used:
            continue
        name = f"{col}_original" if col in MANIFEST_COLUMNS else col
        out[name] = raw[col].astype("string")
        extras.append(name)
    if not keep.any():
        raise ManifestError(
            "no usable row (every audio file is missing)" if len(out) else "the table has no rows",
            where=source,
            fix="check the table and the audio paths",
        )
    df = finish(out.loc[keep], extras=extras, source=source, check_files=check_files)
    return ImportResult(
        manifest=df,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=str(df["corpus"].iloc[0]),
        notes=notes,
        official_split=official,
    )
