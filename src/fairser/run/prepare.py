"""Corpus and feature preparation of a benchmark: the manifest of the configured languages, cached audio and
transcript embeddings, their normalisation, IDI's inferred genders and the cross-validation folds (once per
benchmark).

:func:`prepare_data` runs once per benchmark; every run of the grid reads the :class:`PreparedData` it returns.
A backbone run (``backbone:``) caches no features: the backbone reads the waveforms itself.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from fairser.config import BenchmarkConfig, GroupsConfig, ObjectiveSpec
from fairser.data.manifest import ManifestError, check_transcripts, read_manifest, resolve_audio_paths
from fairser.data.splits import language_split_notes
from fairser.errors import UserError
from fairser.grouping import INTERSECTION_SEP, sensitive_values

__all__ = [
    "Normaliser",
    "PreparedData",
    "effective_groups",
    "featurizer",
    "normaliser",
    "prepare_data",
    "speaker_units",
    "unit_stats",
]


@dataclass
class PreparedData:
    """The manifest rows that survived feature extraction, with their cached embeddings."""

    manifest: pd.DataFrame
    audio: np.ndarray
    text: np.ndarray | None
    labels: tuple[str, ...]
    synthetic: bool
    source: str
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: Resolved audio file of every manifest row (for methods that transform audio, e.g. CO-VADA).
    paths: list[Path] = field(default_factory=list)
    #: Inferred genders (IDI) by :meth:`GroupsConfig.key`, for the ``groups`` settings the grid uses.
    inferred: dict[str, Any] = field(default_factory=dict)
    #: ``protocol: kfold | loso``: the speaker folds of ``manifest`` (:class:`fairser.data.splits.SpeakerFold`).
    folds: list[Any] = field(default_factory=list)

    def for_fold(self, fold: int) -> PreparedData:
        """The same data with ``manifest.split`` set for fold ``fold`` (the features are shared, not copied)."""
        return dataclasses.replace(self, manifest=self.folds[fold].apply(self.manifest))


def effective_groups(spec: ObjectiveSpec, config: BenchmarkConfig) -> GroupsConfig:
    """The ``groups`` setting of one objective (its own, else the benchmark's)."""
    return spec.groups if spec.groups is not None else config.groups


def _load_corpus(
    config: BenchmarkConfig, *, progress: bool, console: Console
) -> tuple[pd.DataFrame, bool, str]:
    corpus = config.corpus
    if corpus.kind == "synthetic":
        from fairser.data.synth import SynthConfig, generate_corpus

        synth = SynthConfig(**corpus.synth)
        manifest = generate_corpus(config=synth, out_dir=corpus.path, progress=progress)
        manifest.attrs["root"] = str(Path(corpus.path).resolve())
        return manifest, True, f"built-in synthetic corpus (eSpeak NG), {corpus.path}"
    if corpus.kind == "manifest":
        if not Path(corpus.path).exists():
            raise UserError(
                f"manifest not found: {corpus.path}",
                where="config key corpus.path",
                fix="give the manifest CSV (`fairser data import` writes one)",
            )
        manifest = read_manifest(corpus.path, labels=corpus.labels)
        source = f"{', '.join(sorted(set(manifest['corpus'])))} ({corpus.path})"
    else:
        from fairser.data.corpora import import_corpus

        parts = []
        for i, src in enumerate(corpus.sources):
            if not Path(src.path).exists():
                raise UserError(
                    f"corpus {src.name!r} not found at {src.path}",
                    where=f"config key corpus.sources.{i}.path",
                    fix="give the corpus folder as its authors distribute it (or its manifest file)",
                )
            try:
                res = import_corpus(
                    src.name,
                    src.path,
                    target=corpus.target,
                    split=corpus.split,
                    seed=corpus.split_seed,
                    fractions=corpus.split_fractions,
                    **src.options,
                )
            except TypeError as e:  # a misspelt option reaches a keyword-only signature
                bad = re.search(r"unexpected keyword argument '([^']+)'", str(e))
                if bad is None:
                    raise
                raise UserError(
                    f"corpus {src.name!r} has no option {bad.group(1)!r}",
                    where=f"config key corpus.sources.{i}.options.{bad.group(1)}",
                    fix="correct or remove it (the options of each corpus: `fairser data import --help`)",
                ) from None
            dropped = ", ".join(f"{k}: {v}" for k, v in res.dropped.items()) or "none"
            console.print(f"imported {src.name}: {len(res.manifest)} utterances (dropped: {dropped})")
            parts.append(res.manifest)
        manifest = pd.concat(parts, ignore_index=True)
        if "split_unit" in manifest.columns:  # (a source without it was split by speaker or officially)
            manifest["split_unit"] = manifest["split_unit"].fillna("speaker")
        source = ", ".join(f"{s.name} ({s.path})" for s in corpus.sources)
    if corpus.cross is not None:
        from fairser.data.splits import cross_corpus_split

        cross = corpus.cross
        manifest = cross_corpus_split(
            manifest,
            train=cross.train,
            test=cross.test,
            by=cross.by,
            valid_fraction=cross.valid_fraction,
            seed=corpus.split_seed,
            shared_speakers="drop_from_train",
        ).reset_index(drop=True)
        manifest = manifest.drop(columns=["split_unit"], errors="ignore")  # (the import's split is replaced)
        source += f"; cross-{cross.by}: train {list(cross.train)} -> test {list(cross.test)}"
        if cross.adapt_fraction > 0:
            manifest = _adapt_split(manifest, fraction=cross.adapt_fraction, seed=corpus.split_seed)
            n_adapt = manifest.loc[manifest["split"] == "adapt", "speaker"].nunique()
            source += f" ({n_adapt} target speakers held out of the test set as unlabelled adaptation data)"
    return manifest, False, source


def _adapt_split(manifest: pd.DataFrame, *, fraction: float, seed: int) -> pd.DataFrame:
    """Move ``fraction`` of the test speakers (gender-stratified, per corpus and language) to split ``adapt``."""
    from fairser.data.splits import speaker_split

    test = manifest["split"] == "test"
    part = speaker_split(manifest.loc[test], fractions=(fraction, 0.0, 1.0 - fraction), seed=seed)
    out = manifest.copy()
    out["split"] = out["split"].astype(object)
    out.loc[test, "split"] = part["split"].map({"train": "adapt", "test": "test", "valid": "test"}).to_numpy()
    if not (out["split"] == "test").any():
        raise ValueError(f"corpus.cross.adapt_fraction={fraction} leaves no test speakers; lower it")
    out["split"] = out["split"].astype("string")
    return out


def _infer_groups(
    config: BenchmarkConfig,
    manifest: pd.DataFrame,
    paths: list[Path],
    audio: np.ndarray | None,
    *,
    progress: bool,
    console: Console,
    notes: list[str],
    timings: dict[str, float],
) -> dict[str, Any]:
    """IDI: infer every row's gender once for each distinct ``groups`` setting the grid uses ({} if none).

    ``audio`` holds the rows' audio features (kmeans, classifier); ``None`` (a backbone run, which caches
    none) extracts them only if such a method is wanted, and an unreadable file then stops the benchmark (the
    backbone could not read it either). The agreement notes are printed and appended to ``notes``.
    """
    from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features
    from fairser.methods.idi import infer_gender, utterance_f0

    wanted: dict[str, GroupsConfig] = {}
    for spec in config.objectives:
        groups = effective_groups(spec, config)
        if groups.inferred:
            wanted.setdefault(groups.key(), groups)
    if not wanted:
        return {}
    t0 = time.perf_counter()
    if audio is None and any(g.method != "f0" for g in wanted.values()):
        audio = np.asarray(
            extract_audio_features(
                paths=paths,
                encoder=build_audio_encoder(config.features.audio, **config.features.audio_options),
                cache=FeatureCache(config.features.cache_dir),
                n_jobs=config.features.n_jobs,
                on_error="raise",
                progress=progress,
            ).features,
            dtype=np.float32,
        )
    out: dict[str, Any] = {}
    idi_notes: list[str] = []
    f0 = None
    for key, groups in wanted.items():
        if f0 is None and groups.method != "classifier":
            f0 = utterance_f0(
                paths, cache_dir=config.features.cache_dir, n_jobs=config.features.n_jobs, progress=progress
            )
        inferred = infer_gender(
            manifest,
            method=groups.method,
            features=audio,
            f0=f0,
            f0_threshold=groups.f0_threshold,
            kmeans_within=groups.kmeans_within,
            classifier_by=groups.classifier_by,
        )
        out[key] = inferred
        a = inferred.agreement
        idi_notes.append(
            f"IDI {groups.method}: agreement with true gender over {a['n']} utterances: accuracy "
            f"{a['accuracy']:.3f}, kappa {a['kappa']:.3f}; over {a.get('n_speakers', 0)} speakers: accuracy "
            f"{a.get('speaker_accuracy', float('nan')):.3f}, kappa {a.get('speaker_kappa', float('nan')):.3f}"
        )
        idi_notes.extend(inferred.notes)
    notes.extend(idi_notes)
    for note in idi_notes:
        console.print(note)
    timings["group_inference"] = time.perf_counter() - t0
    return out


def prepare_data(
    config: BenchmarkConfig, *, progress: bool = True, console: Console | None = None
) -> PreparedData:
    """Corpus and feature stages: the manifest of the configured languages plus cached embeddings."""
    from fairser.features import (
        FeatureCache,
        build_audio_encoder,
        build_text_encoder,
        extract_audio_features,
        extract_text_features,
    )

    console = console or Console()
    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    manifest, synthetic, source = _load_corpus(config, progress=progress, console=console)
    root = manifest.attrs.get("root")
    timings["corpus"] = time.perf_counter() - t0

    unknown_labels = sorted(set(manifest["emotion"]) - set(config.corpus.labels))
    if unknown_labels:
        raise UserError(
            f"labels {unknown_labels} are not in the configured label set {list(config.corpus.labels)}",
            where=f"corpus {source}",
            fix="add them to config key corpus.labels, or map them onto it when importing",
        )
    missing_langs = sorted(set(config.languages) - set(manifest["language"]))
    if missing_langs:
        raise UserError(
            f"languages {missing_langs} are not in the corpus (it has {sorted(set(manifest['language']))})",
            where="config key languages",
            fix="list only languages the corpus has",
        )
    manifest = manifest[manifest["language"].isin(config.languages)].reset_index(drop=True)
    if "audio+text" in config.modalities:
        check_transcripts(manifest, source=source)
    if config.protocol == "holdout":
        for note in language_split_notes(manifest):
            notes.append(note)
            console.print(f"[yellow]warning:[/] {note}", soft_wrap=True, highlight=False)
    missing_cols = [c for c in config.sensitive if c not in manifest.columns]
    if missing_cols:
        raise ManifestError(
            f"sensitive column(s) {missing_cols} are not in the corpus manifest (columns: "
            f"{list(manifest.columns)}); add the column to the manifest or set `sensitive:` to one it has"
        )
    name = INTERSECTION_SEP.join(config.sensitive)
    for lang, sub in manifest.groupby("language"):
        if config.sensitive == ("gender",):  # (gender's value list always holds male and female)
            values = set(sub["gender"]) - {"unknown"}
        else:
            values = set(sensitive_values(sub, config.sensitive))
        if len(values) < 2:
            notes.append(
                f"language {lang!r} has only {sorted(values) or 'unknown'} speakers: its {name} gaps are undefined"
            )

    if config.backbone is not None:  # the backbone reads the waveforms itself: no cached features
        paths = resolve_audio_paths(manifest, root=root)
        inferred = _infer_groups(
            config, manifest, paths, None, progress=progress, console=console, notes=notes, timings=timings
        )
        return PreparedData(
            manifest=manifest.assign(audio_path=[str(p) for p in paths]),
            audio=np.zeros((len(manifest), 0), dtype=np.float32),
            text=None,
            labels=tuple(config.corpus.labels),
            synthetic=synthetic,
            source=source,
            timings=timings,
            notes=notes,
            paths=list(paths),
            inferred=inferred,
        )

    t0 = time.perf_counter()
    cache = FeatureCache(config.features.cache_dir)
    paths = resolve_audio_paths(manifest, root=root)
    audio = extract_audio_features(
        paths=paths,
        encoder=build_audio_encoder(config.features.audio, **config.features.audio_options),
        cache=cache,
        n_jobs=config.features.n_jobs,
        on_error=config.features.on_error,
        progress=progress,
    )
    timings["features_audio"] = time.perf_counter() - t0
    timings["features_audio_extracted"] = float(audio.n_extracted)
    if audio.n_cache_nonfinite:
        notes.append(
            f"{audio.n_cache_nonfinite} cached audio feature vector(s) held NaN/inf: ignored and re-extracted"
        )
        console.print(f"[yellow]warning:[/] {notes[-1]}")
    if audio.failures:
        shown = "; ".join(f"{p}: {r}" for p, r in audio.failures[:10])
        more = f" (and {len(audio.failures) - 10} more)" if len(audio.failures) > 10 else ""
        notes.append(
            f"skipped {len(audio.failures)} unusable audio file(s) (unreadable, NaN or silent): {shown}{more}"
        )
        console.print(f"[yellow]warning:[/] {notes[-1]}")
    keep = np.asarray(audio.ok, dtype=bool)
    manifest = manifest.loc[keep].reset_index(drop=True)
    audio_feats = np.asarray(audio.features, dtype=np.float32)[keep]
    kept_paths = [p for p, k in zip(paths, keep, strict=True) if k]

    if config.train.normalise == "per_speaker":
        notes.append(
            "normalise per_speaker: each speaker's audio features are standardised with that speaker's own "
            "mean and std over all its utterances, test speakers included (transductive on features, never labels)"
        )
    if config.train.normalise == "per_corpus":
        for name, (ref, which) in _per_corpus_reference(manifest).items():
            if which != "train":
                notes.append(
                    f"normalise per_corpus: {name} is standardised with its {len(ref)} "
                    + (
                        "adapt rows (unlabelled, not tested)"
                        if which == "adapt"
                        else "rows, test rows included (transductive; features only, no labels)"
                    )
                )
    inferred = _infer_groups(
        config,
        manifest,
        kept_paths,
        audio_feats,
        progress=progress,
        console=console,
        notes=notes,
        timings=timings,
    )

    folds = _speaker_folds(config, manifest, notes=notes, console=console)
    if folds:  # the tables and the report say how the test predictions came about
        scheme = "leave-one-speaker-out" if config.protocol == "loso" else f"{config.folds}-fold speaker"
        source += f"; {scheme} cross-validation, out-of-fold predictions of {len(folds)} folds pooled"

    text_feats = None
    if "audio+text" in config.modalities:
        t0 = time.perf_counter()
        text_feats = extract_text_features(
            texts=list(manifest["transcript"]),
            encoder=build_text_encoder(config.features.text, **config.features.text_options),
            cache=cache,
            progress=progress,
        ).astype(np.float32)
        timings["features_text"] = time.perf_counter() - t0
    return PreparedData(
        manifest=manifest,
        audio=audio_feats,
        text=text_feats,
        labels=tuple(config.corpus.labels),
        synthetic=synthetic,
        source=source,
        timings=timings,
        notes=notes,
        paths=kept_paths,
        inferred=inferred,
        folds=folds,
    )


def _speaker_folds(
    config: BenchmarkConfig, manifest: pd.DataFrame, *, notes: list[str], console: Console
) -> list:
    """``protocol: kfold | loso``: the speaker folds of the prepared manifest ([] under ``holdout``)."""
    if config.protocol == "holdout":
        return []
    from fairser.data.splits import speaker_folds

    folds = speaker_folds(
        manifest,
        protocol=config.protocol,
        k=config.folds,
        n_valid=config.valid_speakers,
        seed=config.corpus.split_seed,
    )
    n_speakers = sum(len(f.test_speakers) for f in folds)
    scheme = "leave-one-speaker-out" if config.protocol == "loso" else f"{config.folds}-fold speaker"
    note = (
        f"protocol {config.protocol}: {scheme} cross-validation over {n_speakers} speakers ({len(folds)} folds, "
        f"gender-stratified within corpus and language; {config.valid_speakers} validation speaker(s) per "
        "gender drawn from each fold's training speakers); every speaker is tested once and the out-of-fold "
        "predictions are pooled; the corpus's own train/valid/test split is not used"
    )
    notes.append(note)
    console.print(note)
    return folds


def _per_corpus_reference(manifest: pd.DataFrame) -> dict[str, tuple[np.ndarray, str]]:
    """``normalise: per_corpus``: the rows each corpus is standardised with, and which rows they are.

    A corpus's training rows; for a corpus with none (the test side of a cross-corpus protocol), its
    ``adapt`` rows (unlabelled target speakers held out of the test set); else all its rows (transductive:
    the test rows' features, never their labels).
    """
    split = manifest["split"].to_numpy()
    corpus = manifest["corpus"].astype(str).to_numpy()
    out = {}
    for name in pd.unique(corpus):
        own = corpus == name
        for which, ref in (
            ("train", own & (split == "train")),
            ("adapt", own & (split == "adapt")),
            ("all", own),
        ):
            if ref.any():
                out[name] = (np.flatnonzero(ref), which)
                break
    return out


@dataclass
class Normaliser:
    """Audio-feature standardisation as ``train.normalise`` says; ``normalise(features, rows)`` standardises the
    features of manifest rows ``rows`` (or of files derived from them).

    ``mode`` is ``standard`` (one ``stats`` entry, key ``""``: the training rows' mean and std), ``per_corpus``
    or ``per_speaker`` (one entry per corpus, or per ``corpus/speaker``) or ``none``; ``units`` names the unit of
    every manifest row (``None`` for ``standard`` and ``none``). The statistics are kept so that a saved model
    (:mod:`fairser.run.saved`) applies exactly the same standardisation (:meth:`apply`).
    """

    mode: str
    stats: dict[str, tuple[np.ndarray, np.ndarray]]
    units: np.ndarray | None = None

    def __call__(self, x, rows) -> np.ndarray:
        units = None if self.units is None else self.units[np.asarray(rows)]
        return self.apply(x, units=units)

    def apply(self, x, *, units: np.ndarray | None = None) -> np.ndarray:
        """Standardise the feature rows ``x``; ``units`` (per corpus / speaker) names each row's unit."""
        if self.mode == "none":
            return np.asarray(x, dtype=np.float32)
        if self.mode == "standard":
            mean, std = self.stats[""]
            return ((np.asarray(x) - mean) / std).astype(np.float32)
        x, which = np.asarray(x, dtype=np.float64), np.asarray(units)
        out = np.empty_like(x)
        for name, (mean, std) in self.stats.items():
            sel = which == name
            out[sel] = (x[sel] - mean) / std
        return out.astype(np.float32)


def unit_stats(
    features: np.ndarray, units: np.ndarray, *, dtype=np.float64
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Mean and std (+1e-8) of the feature rows of each unit (corpus or ``corpus/speaker``), in ``dtype``."""
    return {
        name: (
            features[units == name].astype(dtype).mean(0),
            features[units == name].astype(dtype).std(0) + 1e-8,
        )
        for name in pd.unique(units)
    }


def speaker_units(manifest: pd.DataFrame) -> np.ndarray:
    """The unit of per-speaker normalisation of every row: ``corpus/speaker``."""
    return (manifest["corpus"].astype(str) + "/" + manifest["speaker"].astype(str)).to_numpy()


def normaliser(prepared: PreparedData, config: BenchmarkConfig) -> Normaliser:
    """The :class:`Normaliser` of ``train.normalise``: ``standard`` with the training rows' mean and std,
    ``per_corpus`` with each corpus's own reference rows (:func:`_per_corpus_reference`), ``per_speaker`` with
    each speaker's own rows (all of them, features only), ``none`` unchanged."""
    m = prepared.manifest
    train_rows = np.flatnonzero((m["split"] == "train").to_numpy())
    if len(train_rows) == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    mode = config.train.normalise
    if mode == "none":
        return Normaliser(mode="none", stats={})
    if mode == "standard":
        mean, std = prepared.audio[train_rows].mean(0), prepared.audio[train_rows].std(0) + 1e-8
        return Normaliser(mode="standard", stats={"": (mean, std)})
    if mode == "per_speaker":
        # in float64: a feature nearly constant within one speaker must not turn rounding into signal
        unit = speaker_units(m)
        return Normaliser(mode=mode, stats=unit_stats(prepared.audio, unit), units=unit)
    unit = m["corpus"].astype(str).to_numpy()
    stats = {
        name: (prepared.audio[ref].mean(0), prepared.audio[ref].std(0) + 1e-8)
        for name, (ref, _) in _per_corpus_reference(m).items()
    }
    return Normaliser(mode=mode, stats=stats, units=unit)


def featurizer(prepared: PreparedData, config: BenchmarkConfig):
    """``featurize(paths, rows=...) -> (features, ok)`` through the run's encoder and cache, each file normalised
    like the manifest row it derives from (``rows``). The normalisation statistics are computed on first use."""

    def featurize(paths, *, rows):
        from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features

        normalise = normaliser(prepared, config)
        res = extract_audio_features(
            paths=list(paths),
            encoder=build_audio_encoder(config.features.audio, **config.features.audio_options),
            cache=FeatureCache(config.features.cache_dir),
            n_jobs=1,
            on_error="skip",
            progress=False,
        )
        return normalise(np.nan_to_num(res.features), rows), np.asarray(res.ok, dtype=bool)

    return featurize
