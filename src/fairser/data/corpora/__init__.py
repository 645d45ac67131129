"""Corpus loaders: each corpus read as its authors distribute it, turned into one validated manifest.

``import_corpus(name, path, ...)`` runs the whole import: the corpus's loader (:data:`CORPORA`), the declared
label map onto the target set (:mod:`fairser.data.label_maps`; unmapped labels dropped and counted), the split
(official where the corpus has one, else speaker-independent and gender-stratified, :mod:`fairser.data.splits`)
and the manifest validation (:func:`fairser.data.manifest.validate_manifest`).

Registered corpora: ``meld_st`` (MELD-ST, audio, en+de/en+ja, official splits), ``meld`` (MELD text view, no
audio, official splits), ``emodb``, ``ravdess``, ``crema_d`` (no official split) and ``generic`` (any CSV/JSONL
with a declared column mapping).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fairser.data.corpora._common import (
    DropLog,
    GenderTable,
    ImportResult,
    apply_gender_table,
    read_gender_table,
)
from fairser.data.corpora.crema_d import load_crema_d
from fairser.data.corpora.emodb import load_emodb
from fairser.data.corpora.generic import load_generic
from fairser.data.corpora.meld import load_meld
from fairser.data.corpora.meld_st import load_meld_st
from fairser.data.corpora.ravdess import load_ravdess
from fairser.data.label_maps import LABEL_MAPS, apply_target, target_labels
from fairser.data.manifest import validate_manifest
from fairser.data.splits import speaker_split

__all__ = [
    "CORPORA",
    "CorpusSpec",
    "ImportResult",
    "import_corpus",
    "load_crema_d",
    "load_emodb",
    "load_generic",
    "load_meld",
    "load_meld_st",
    "load_ravdess",
    "read_gender_table",
]


@dataclass(frozen=True)
class CorpusSpec:
    """A registered corpus: its loader and what the importer needs to know about it.

    ``gender_by_name`` marks corpora whose loader takes ``gender_table`` itself (genders looked up by
    character name); for the others a user table only fills ``unknown`` genders by speaker id.
    """

    name: str
    load: Callable[..., ImportResult]
    description: str
    official_split: bool
    has_audio: bool = True
    gender_by_name: bool = False


CORPORA: dict[str, CorpusSpec] = {
    "meld_st": CorpusSpec(
        "meld_st",
        load_meld_st,
        "MELD-ST (Chen et al. 2024): en+de / en+ja speech, official splits",
        True,
        gender_by_name=True,
    ),
    "meld": CorpusSpec(
        "meld",
        load_meld,
        "MELD (Poria et al. 2019): text view, no audio, official splits",
        True,
        has_audio=False,
        gender_by_name=True,
    ),
    "emodb": CorpusSpec("emodb", load_emodb, "EmoDB (Burkhardt et al. 2005): German acted speech", False),
    "ravdess": CorpusSpec(
        "ravdess", load_ravdess, "RAVDESS (Livingstone & Russo 2018): English acted speech", False
    ),
    "crema_d": CorpusSpec("crema_d", load_crema_d, "CREMA-D (Cao et al. 2014): English acted speech", False),
    "generic": CorpusSpec(
        "generic", load_generic, "any CSV/TSV/JSONL manifest with a declared column mapping", False
    ),
}
_ALIASES = {"meld-st": "meld_st", "cremad": "crema_d", "crema-d": "crema_d", "berlin": "emodb"}
_SPLIT_METHODS = ("auto", "official", "speaker")


def _label_drops(
    before: pd.DataFrame, label_map: Mapping[str, Any] | None, target: str, drops: DropLog
) -> None:
    if label_map is None:
        return
    mapped = before["emotion"].astype(str).map(lambda x: label_map.get(x))
    for rid, label in zip(before.loc[mapped.isna(), "id"], before.loc[mapped.isna(), "emotion"], strict=True):
        drops.add(rid, f"label {label!r} has no {target} counterpart")


def import_corpus(
    name: str,
    path: str | Path,
    *,
    target: str = "meld7",
    gender_table: GenderTable | None = None,
    split: str = "auto",
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    label_map: Mapping[str, str | None] | None = None,
    strict: bool = True,
    **options: Any,
) -> ImportResult:
    """Import a corpus into a validated manifest with harmonised labels and splits.

    Parameters
    ----------
    name : str
        A key of :data:`CORPORA` (``meld_st``, ``meld``, ``emodb``, ``ravdess``, ``crema_d``, ``generic``).
    path : path
        The corpus folder as distributed (for ``generic``: the CSV/JSONL file).
    target : {"meld7", "core4", "original"}
        Label set: the 7 MELD emotions, the 4-class core, or the corpus's own labels.
    gender_table : path, DataFrame or mapping, optional
        ``speaker,gender`` table. MELD/MELD-ST: keyed by character name, extends the shipped main-cast table.
        Other corpora: keyed by manifest speaker id, fills ``unknown`` genders (a contradiction is an error).
    split : {"auto", "official", "speaker"}
        ``official`` keeps the corpus's split (an error where there is none), ``speaker`` assigns a
        speaker-independent gender-stratified split (:func:`fairser.data.splits.speaker_split`; an official
        split is kept in the extra column ``official_split``), ``auto`` = official if any, else speaker.
    seed, fractions
        Passed to :func:`fairser.data.splits.speaker_split`.
    label_map : mapping, optional
        Own map from corpus labels to ``target`` labels (``None`` = drop), replacing the declared one.
    strict : bool
        Unusable files/rows are an error (True) or dropped and counted (False).
    **options
        Passed to the loader (e.g. ``columns=`` for ``generic``, ``pairs=`` for ``meld_st``,
        ``demographics=`` for ``crema_d``, ``vocal_channels=`` for ``ravdess``).

    Returns
    -------
    ImportResult
        ``.manifest`` (validated; emotions in ``target``, original label in ``emotion_original``),
        ``.dropped`` (reason -> count), ``.dropped_rows``, ``.summary()`` and ``.summary_text()``.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in CORPORA:
        raise ValueError(f"unknown corpus {name!r}; registered: {sorted(CORPORA)}")
    if split not in _SPLIT_METHODS:
        raise ValueError(f"split must be one of {_SPLIT_METHODS}, got {split!r}")
    allowed = target_labels(target)
    spec = CORPORA[key]
    if split == "official" and key != "generic" and not spec.official_split:
        raise ValueError(f"{key} has no official split; use split='speaker' (or 'auto')")

    kwargs = dict(options)
    if key != "meld":
        kwargs["strict"] = strict
    if spec.gender_by_name and gender_table is not None:
        kwargs["gender_table"] = gender_table
    loaded = spec.load(path, **kwargs)
    manifest = loaded.manifest
    notes = list(loaded.notes)
    if gender_table is not None and not spec.gender_by_name:
        manifest = apply_gender_table(manifest, gender_table, corpus=key)

    drops = DropLog(corpus=key, strict=False)
    drops.rows.extend(loaded.dropped_rows.to_dict("records"))
    corpus_for_map = key if key in LABEL_MAPS else None
    if label_map is not None:
        used_map: Mapping[str, Any] | None = dict(label_map)
    elif corpus_for_map is not None and allowed is not None:
        used_map = LABEL_MAPS[corpus_for_map][target]
    elif allowed is not None:
        used_map = {lab: lab for lab in allowed}
    else:
        used_map = None
    _label_drops(manifest, used_map, target, drops)
    manifest, _ = apply_target(manifest, corpus=corpus_for_map, target=target, label_map=used_map)
    if manifest.empty:
        raise ValueError(f"{key}: no utterance left after mapping labels onto {target!r} ({drops.counts()})")

    official = loaded.official_split
    if split == "official" and not official:
        raise ValueError(f"{path}: no split column, so there is no official split; use split='speaker'")
    if split == "speaker" or (split == "auto" and not official):
        if official:
            manifest["official_split"] = manifest["split"]
        manifest = speaker_split(manifest, fractions=fractions, seed=seed)
        notes = [n for n in notes if "until one is assigned" not in n]
        notes.append(
            f"speaker-independent gender-stratified split, fractions {tuple(fractions)}, seed {seed}"
        )

    check_files = spec.has_audio and bool(options.get("check_files", True))
    manifest = validate_manifest(manifest, labels=allowed, check_files=check_files, source=f"{key} import")
    return ImportResult(
        manifest=manifest,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=key,
        target=target,
        notes=notes,
    )
