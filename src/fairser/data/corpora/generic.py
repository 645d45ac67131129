"""Any other corpus, described by a CSV/TSV or JSON-lines file and a declared column mapping.

The mapping goes from a canonical manifest column (:data:`fairser.data.manifest.MANIFEST_COLUMNS`) to either
a column of the file or a constant:

- ``"emotion": "label"`` reads the file's ``label`` column;
- ``"language": "=fr"`` is the constant ``fr`` (a leading ``=`` always means a constant);
- for ``language``, ``corpus``, ``gender``, ``split`` and ``transcript`` a value that is not a column of the
  file is taken as a constant too (``"language": "fr"``), since such columns are often one value per corpus;
  for the other columns a value that is not a column is an error, so a typo is never silently a constant.

Canonical columns left out of the mapping are read from a file column of the same name when there is one;
otherwise ``transcript`` is empty, ``gender`` is ``unknown``, ``corpus`` is the file's stem, ``id`` is
derived from ``audio_path``, and ``split`` is ``train`` (no official split; one is assigned later).
``emotion``, ``speaker``, ``language`` and ``audio_path`` must come from somewhere. Relative audio paths are
taken relative to ``audio_root`` (default: the file's folder) and written out absolute. Every other column of
the file is kept as an extra.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, ImportResult, finish
from fairser.data.manifest import MANIFEST_COLUMNS, ManifestError

__all__ = ["CONSTANT_COLUMNS", "load_generic", "read_table"]

#: Canonical columns whose mapping value may be a bare constant (no leading ``=``).
CONSTANT_COLUMNS: tuple[str, ...] = ("language", "corpus", "gender", "split", "transcript")
_REQUIRED = ("emotion", "speaker", "language", "audio_path")
_SPLIT_ALIASES = {"dev": "valid", "val": "valid", "validation": "valid", "training": "train", "eval": "test"}


def read_table(path: str | Path, *, sep: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV (by extension, or ``sep``) or JSON-lines file as strings."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        try:
            df = pd.read_json(path, lines=suffix != ".json", dtype=False, orient="records")
        except ValueError as err:
            raise ManifestError(
                f"{path}: not valid JSON{' lines' if suffix != '.json' else ''}: {err}"
            ) from err
        df = df.astype("string").fillna("")
    elif suffix in (".csv", ".tsv", ".txt") or sep is not None:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, sep=sep or ("\t" if suffix == ".tsv" else ",")
        )
    else:
        raise ManifestError(f"{path}: unknown manifest format {suffix!r}; use .csv, .tsv, .jsonl or .json")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def _resolve(columns: Mapping[str, str], df: pd.DataFrame, source: str) -> dict[str, tuple[str, str]]:
    """canonical column -> ("column", name) | ("const", value)."""
    unknown = [c for c in columns if c not in MANIFEST_COLUMNS]
    if unknown:
        raise ManifestError(
            f"{source}: mapping names unknown canonical column(s) {unknown}; allowed {list(MANIFEST_COLUMNS)}"
        )
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
                    f"{source}: column {value!r} (mapped to {canon!r}) not found; file columns are {list(df.columns)}"
                    " (write '=value' for a constant)"
                )
        elif canon in df.columns:
            spec[canon] = ("column", canon)
    missing = [c for c in _REQUIRED if c not in spec]
    if missing:
        raise ManifestError(
            f"{source}: no column for {missing}; map them with columns={{canonical: file column}}"
            f" (file columns are {list(df.columns)})"
        )
    return spec


def load_generic(
    path: str | Path,
    *,
    columns: Mapping[str, str] | None = None,
    corpus: str | None = None,
    audio_root: str | Path | None = None,
    check_files: bool = True,
    strict: bool = True,
    sep: str | None = None,
) -> ImportResult:
    """Read a corpus described by a CSV/TSV/JSONL file and a declared column mapping.

    Parameters
    ----------
    path : path
        The file (``.csv``, ``.tsv``, ``.jsonl``/``.ndjson`` or a ``.json`` array of records).
    columns : mapping, optional
        Canonical column -> file column or constant (see the module docstring).
    corpus : str, optional
        Corpus name (default: the mapping's ``corpus``, a ``corpus`` column, else the file's stem).
    audio_root : path, optional
        Folder relative audio paths are relative to (default: the file's folder).
    check_files : bool
        Whether audio files must exist (use ``False`` for a text-only corpus with empty ``audio_path``).
    strict : bool
        If true, a missing audio file is an error naming it; if false its row is dropped and counted.
    sep : str, optional
        Field separator for delimited text files (default: by extension).

    Returns
    -------
    ImportResult
        Labels as written in the file (map them with ``import_corpus(..., label_map=...)``).
    """
    path = Path(path)
    raw = read_table(path, sep=sep)
    columns = dict(columns or {})
    if corpus is not None:
        columns["corpus"] = "=" + corpus
    spec = _resolve(columns, raw, str(path))
    notes = []
    official = "split" in spec
    out = pd.DataFrame(index=raw.index)
    for canon, (kind, value) in spec.items():
        out[canon] = raw[value].astype("string").str.strip() if kind == "column" else value
    if "transcript" not in out:
        out["transcript"] = ""
    if "gender" not in out:
        out["gender"] = "unknown"
        notes.append("no gender column: every gender is unknown")
    if "corpus" not in out:
        out["corpus"] = path.stem
    if "split" not in out:
        out["split"] = "train"
        notes.append("no split column: split is 'train' until one is assigned")
    else:
        out["split"] = out["split"].str.lower().replace(_SPLIT_ALIASES)
    out["gender"] = out["gender"].str.strip().str.lower()

    base = Path(audio_root) if audio_root is not None else path.parent
    rel = out["audio_path"].fillna("")
    has_audio = rel.str.len() > 0
    resolved = [str((p if p.is_absolute() else base / p).absolute()) for p in map(Path, rel[has_audio])]
    if "id" not in out:
        out["id"] = (
            out["corpus"] + "_" + rel.where(has_audio, pd.Series(out.index.astype(str), index=out.index))
        )
    out.loc[has_audio, "audio_path"] = resolved

    drops = DropLog(corpus=str(out["corpus"].iloc[0]) if len(out) else path.stem, strict=strict)
    keep = pd.Series(True, index=out.index)
    if check_files:
        for i, p in zip(out.index, out["audio_path"], strict=True):
            if not p or not Path(p).is_file():
                drops.add(p or f"{path} row {i}", "audio file missing", f"id {out.at[i, 'id']}")
                keep[i] = False
        drops.check(hint="pass strict=False to drop rows without audio and count them, or check_files=False")

    used = {value for kind, value in spec.values() if kind == "column"}
    extras = []
    for col in raw.columns:
        if col in used:
            continue
        name = f"{col}_original" if col in MANIFEST_COLUMNS else col
        out[name] = raw[col].astype("string")
        extras.append(name)
    df = finish(out.loc[keep], extras=extras, source=str(path), check_files=check_files)
    return ImportResult(
        manifest=df,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=str(df["corpus"].iloc[0]) if len(df) else path.stem,
        notes=notes,
        official_split=official,
    )
