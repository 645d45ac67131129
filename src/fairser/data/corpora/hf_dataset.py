"""Hugging Face ``datasets`` corpora saved to disk (``save_to_disk``) or as parquet files, read as a table.

A saved dataset keeps each audio example as ``{"bytes", "path"}`` (the ``Audio`` feature): the encoded file
itself, or only a path to it. :func:`read_hf_dataset` writes the bytes of every example out as a file
(named by the sha256 of its bytes, so a re-import writes nothing new) in ``audio_dir`` (default
``data/<folder name>_audio`` under the working directory), and returns an ordinary table for
:func:`fairser.data.corpora.generic.load_generic` with the file's path in ``audio_path``. The audio column is
the one with the ``Audio`` feature, else one named ``audio``. Saved datasets need the optional extra
``fairser[hf]`` (``datasets``); parquet files are read with pyarrow. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from fairser.data.manifest import ManifestError

__all__ = ["is_hf_dataset", "read_hf_dataset"]


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.parquet")) + sorted(folder.glob("data/*.parquet"))


def is_hf_dataset(folder: Path) -> bool:
    """A ``save_to_disk`` folder (``state.json`` + ``dataset_info.json``) or a folder of parquet files."""
    folder = Path(folder)
    saved = (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file()
    return saved or bool(_parquet_files(folder))


def _table(folder: Path):
    if (folder / "state.json").is_file():
        try:
            import datasets
        except ImportError as err:
            raise ManifestError(
                "this folder is a Hugging Face dataset (save_to_disk), but `datasets` is not installed",
                where=str(folder),
                fix="pip install 'fairser[hf]'",
            ) from err
        try:
            ds = datasets.load_from_disk(str(folder))
        except Exception as err:  # datasets raises many types for a broken folder
            raise ManifestError(
                f"cannot load the dataset: {type(err).__name__}: {err}",
                where=str(folder),
                fix="check it opens with datasets.load_from_disk",
            ) from err
        if isinstance(ds, datasets.DatasetDict):
            parts = []
            for split, part in ds.items():
                t = part.data.table.to_pandas()
                if "split" not in t.columns:
                    t["split"] = split
                parts.append(t)
            feats = next(iter(ds.values())).features
            return pd.concat(parts, ignore_index=True), feats
        return ds.data.table.to_pandas(), ds.features
    import pyarrow.parquet as pq

    files = _parquet_files(folder)
    tables = []
    for f in files:
        try:
            tables.append(pq.read_table(f).to_pandas())
        except Exception as err:
            raise ManifestError(
                f"cannot read parquet: {type(err).__name__}: {err}", where=str(f), fix="check the file"
            ) from err
    return pd.concat(tables, ignore_index=True), None


def read_hf_dataset(folder: str | Path, *, audio_dir: str | Path | None = None) -> pd.DataFrame:
    """The examples of a saved dataset as a table of strings, audio written out as files (``audio_path``)."""
    folder = Path(folder)
    df, features = _table(folder)
    audio_cols = [k for k, v in (features or {}).items() if type(v).__name__ == "Audio"]
    if not audio_cols and "audio" in df.columns:
        audio_cols = ["audio"]
    if not audio_cols:
        raise ManifestError(
            f"no audio column (columns: {list(df.columns)})",
            where=str(folder),
            fix="cast the audio column with datasets.Audio(), or name it 'audio'",
        )
    col = audio_cols[0]
    for name, feature in (features or {}).items():  # class labels are stored as integers: write their names
        if type(feature).__name__ == "ClassLabel" and name in df.columns:
            df[name] = [feature.names[int(v)] if int(v) >= 0 else "" for v in df[name]]
    out_dir = Path(audio_dir) if audio_dir is not None else Path("data") / f"{folder.resolve().name}_audio"
    paths = []
    for i, value in enumerate(df[col]):
        value = value if isinstance(value, dict) else {"bytes": None, "path": value}
        data, path = value.get("bytes"), value.get("path")
        if data:
            suffix = Path(path).suffix if path else ".wav"
            target = out_dir / f"{hashlib.sha256(data).hexdigest()[:32]}{suffix or '.wav'}"
            if not target.is_file():
                out_dir.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            paths.append(str(target.absolute()))
        elif path:
            p = Path(path)
            paths.append(str(p if p.is_absolute() else folder / p))
        else:
            raise ManifestError(
                f"example {i} has neither audio bytes nor a path", where=f"{folder} (column {col!r})"
            )
    df = df.drop(columns=[col])
    df["audio_path"] = paths
    return df.astype("string").fillna("")
