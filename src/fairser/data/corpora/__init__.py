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
from fairser.data.label_maps import LABEL_MAPS, target_labels
from fairser.data.labels import apply_label_map, canonical_label, synonym_map
from fairser.data.manifest import ManifestError, validate_manifest
from fairser.data.splits import fill_language_splits, speaker_split

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


def _target_value(value: Any, *, target: str, allowed: tuple[str, ...] | None, label: str) -> str | None:
    """A user map's right-hand side as a target label: ``None``/empty drops, a synonym is resolved."""
    if value is None or str(value).strip() == "":
        return None
    value = str(value).strip()
    if allowed is None or value in allowed:
        return value
    canon = canonical_label(value)
    mapped = synonym_map([value], target=target).get(value) if canon is not None else None
    if mapped is None:
        raise ManifestError(
            f"the label map sends {label!r} to {value!r}, which is not in the {target!r} set {list(allowed)}",
            where="label_map",
            fix=f"map it onto one of {list(allowed)} (or leave the right side empty to drop it: {label}=)",
        )
    return mapped


def _label_plan(
    labels: Sequence[str],
    *,
    corpus: str,
    target: str,
    user_map: Mapping[str, Any] | None,
) -> tuple[dict[str, str | None], dict[str, str]]:
    """Corpus label -> target label (``None``: drop), and why each dropped label is dropped.

    Look-up order: the user's map (exact, then case-insensitive), the corpus's declared map
    (:data:`LABEL_MAPS`), the synonym table (:data:`fairser.data.labels.LABEL_SYNONYMS`). A user map extends
    the defaults; it never replaces them.
    """
    allowed = target_labels(target)
    user = {str(k).strip(): v for k, v in (user_map or {}).items()}
    user_lower = {k.lower(): v for k, v in user.items()}
    declared = LABEL_MAPS.get(corpus, {}).get(target, {}) if allowed is not None else {}
    synonyms = synonym_map(labels, target=target) if allowed is not None else {}
    plan: dict[str, str | None] = {}
    why: dict[str, str] = {}
    for label in labels:
        key = str(label).strip()
        if key in user or key.lower() in user_lower:
            value = user[key] if key in user else user_lower[key.lower()]
            plan[label] = _target_value(value, target=target, allowed=allowed, label=key)
            if plan[label] is None:
                why[label] = f"label {key!r} dropped by the label map"
        elif allowed is None:
            plan[label] = label
        elif key in declared:
            plan[label] = declared[key]
            if plan[label] is None:
                why[label] = f"label {key!r} has no {target} counterpart"
        elif label in synonyms:
            plan[label] = synonyms[label]
            if plan[label] is None:
                why[label] = f"label {key!r} has no {target} counterpart"
        else:
            plan[label] = None
            why[label] = f"label {key!r} is not a known emotion name"
    return plan, why


def _drop_table(rows: pd.DataFrame) -> str:
    """Dropped rows as a printable table: what (label or file reason), count, why."""
    if rows.empty:
        return ""
    counts = rows.groupby(["detail", "reason"], sort=False).size().reset_index(name="count")
    counts = counts.sort_values("count", ascending=False, kind="stable")
    lines = [f"  {'label':<16} {'count':>6}  why"]
    for detail, reason, n in counts.itertuples(index=False):
        label = detail if reason.startswith("label ") else "-"
        lines.append(f"  {label:<16} {n:>6}  {reason}")
    return "\n".join(lines)


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
    max_drop: float = 0.2,
    allow_drop: bool = False,
    **options: Any,
) -> ImportResult:
    """Import a corpus into a validated manifest with harmonised labels and splits.

    Parameters
    ----------
    name : str
        A key of :data:`CORPORA` (``meld_st``, ``meld``, ``emodb``, ``ravdess``, ``crema_d``, ``generic``).
    path : path
        The corpus folder as distributed (for ``generic``: a folder or a table file, an audformat database or
        a Hugging Face dataset folder; :mod:`fairser.data.corpora.generic`).
    target : {"meld7", "core4", "original"}
        Label set: the 7 MELD emotions, the 4-class core, or the corpus's own labels.
    gender_table : path, DataFrame or mapping, optional
        ``speaker,gender`` table. MELD/MELD-ST: keyed by character name, extends the shipped main-cast table.
        Other corpora: keyed by manifest speaker id, fills ``unknown`` genders (a contradiction is an error).
    split : {"auto", "official", "speaker"}
        ``official`` keeps the corpus's split (an error where there is none), ``speaker`` assigns a
        speaker-independent gender-stratified split (:func:`fairser.data.splits.speaker_split`; an official
        split is kept in the extra column ``official_split``), ``auto`` = official if any, else speaker. A
        language whose speakers cannot fill both train and test is split by utterance instead
        (:func:`fairser.data.splits.fill_language_splits`; column ``split_unit``, said in the notes).
    seed, fractions
        Passed to :func:`fairser.data.splits.speaker_split`.
    label_map : mapping, optional
        Corpus label -> target label (``None`` or ``""`` = drop; a synonym such as ``happy`` is resolved).
        It extends the corpus's declared map and the synonym table (:data:`fairser.data.labels.LABEL_SYNONYMS`).
    strict : bool
        Unusable files/rows are an error (True) or dropped and counted (False).
    max_drop, allow_drop
        More than ``max_drop`` of the utterances dropped (labels without a counterpart, unusable files) is a
        :class:`ManifestError` with the table of drops, unless ``allow_drop``.
    **options
        Passed to the loader (e.g. ``columns=``/``corpus=`` for ``generic``, ``pairs=`` for ``meld_st``,
        ``demographics=`` for ``crema_d``, ``vocal_channels=`` for ``ravdess``).

    Returns
    -------
    ImportResult
        ``.manifest`` (validated; emotions in ``target``, original label in ``emotion_original``),
        ``.dropped`` (reason -> count), ``.dropped_rows``, ``.summary()`` and ``.summary_text()``.
    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in CORPORA:
        raise ManifestError(
            f"unknown corpus {name!r}",
            where="corpus name",
            fix=f"use one of {sorted(CORPORA)} (generic reads any table, audformat or Hugging Face folder)",
        )
    if split not in _SPLIT_METHODS:
        raise ManifestError(f"split must be one of {_SPLIT_METHODS}, got {split!r}", where="split")
    try:
        allowed = target_labels(target)
    except ValueError as err:
        raise ManifestError(str(err), where="target") from err
    spec = CORPORA[key]
    if split == "official" and key != "generic" and not spec.official_split:
        raise ManifestError(
            f"{key} has no official split", where="split", fix="use split 'auto' (the default) or 'speaker'"
        )
    if not Path(path).exists():
        raise ManifestError(
            "corpus path not found",
            where=str(path),
            fix="give the corpus folder as its authors distribute it",
        )

    kwargs = dict(options)
    if key != "meld":
        kwargs["strict"] = strict
    if spec.gender_by_name and gender_table is not None:
        kwargs["gender_table"] = gender_table
    try:
        loaded = spec.load(path, **kwargs)
    except TypeError as err:  # an option the loader does not take (a YAML typo)
        if "unexpected keyword argument" not in str(err):
            raise
        bad = str(err).split("argument")[-1].strip(" '")
        raise ManifestError(
            f"the {key} loader takes no option {bad!r}",
            where=f"corpus.sources[{key}].options",
            fix="generic takes columns, corpus, audio_root, audio_dir, check_files, sep; every corpus takes label_map, strict,"
            " max_drop, allow_drop",
        ) from err
    manifest = loaded.manifest
    notes = list(loaded.notes)
    if gender_table is not None and not spec.gender_by_name:
        manifest = apply_gender_table(manifest, gender_table, corpus=key)

    drops = DropLog(corpus=key, strict=False)
    drops.rows.extend(loaded.dropped_rows.to_dict("records"))
    n_loader_drops = len(drops.rows)
    labels_present = sorted(set(manifest["emotion"].astype(str)))
    plan, why = _label_plan(labels_present, corpus=key, target=target, user_map=label_map)
    present = {str(lab).strip().lower() for lab in labels_present}
    unused = sorted(str(k) for k in (label_map or {}) if str(k).strip().lower() not in present)
    if unused:
        notes.append(f"label map entries {unused} match no label of the corpus (labels: {labels_present})")
    for rid, label in zip(manifest["id"], manifest["emotion"].astype(str), strict=True):
        if plan[label] is None:
            drops.add(rid, why[label], label)
    n_total = len(manifest) + n_loader_drops
    n_dropped = len(drops.rows)
    manifest, _ = apply_label_map(manifest, mapping=plan)
    table = _drop_table(drops.frame())
    if n_dropped and n_total and (manifest.empty or (n_dropped / n_total > max_drop and not allow_drop)):
        raise ManifestError(
            f"{n_dropped} of {n_total} utterances ({n_dropped / n_total:.0%}) would be dropped"
            + (", none left" if manifest.empty else f" (more than max_drop {max_drop:.0%})")
            + f" when mapping onto {target!r}:\n{table}",
            where=f"{key} import ({path})",
            fix="map the labels: --label-map LABEL=EMOTION,... (YAML options: {label_map: {LABEL: EMOTION}}),"
            " choose another --target, or accept the loss with --allow-drop (YAML options: {allow_drop: true})",
        )

    official = loaded.official_split
    if split == "official" and not official:
        raise ManifestError(
            "no split column, so there is no official split",
            where=str(path),
            fix="use split 'auto' or 'speaker', or map the file's split column (--columns split=COLUMN)",
        )
    if split == "speaker" or (split == "auto" and not official):
        if official:
            manifest["official_split"] = manifest["split"]
        manifest = speaker_split(manifest, fractions=fractions, seed=seed)
        notes = [n for n in notes if "until one is assigned" not in n]
        notes.append(
            f"speaker-independent gender-stratified split, fractions {tuple(fractions)}, seed {seed}"
        )
        manifest, split_notes = fill_language_splits(manifest, fractions=fractions, seed=seed)
        notes.extend(split_notes)

    check_files = spec.has_audio and bool(options.get("check_files", True))
    manifest = validate_manifest(manifest, labels=allowed, check_files=check_files, source=f"{key} import")
    return ImportResult(
        manifest=manifest,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=loaded.corpus if key == "generic" else key,
        target=target,
        notes=notes,
    )
