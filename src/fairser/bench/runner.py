"""The benchmark grid: corpus -> features -> one multilingual model per (setting, objective, seed).

As in the ERM-MinMaxGAP paper, one multilingual model is trained on all languages of a modality setting and
evaluated per language, so MinMaxGAP's max runs over the languages of that setting. With
``joint_modalities`` one model covers both settings (domains = language x modality; the transcript is
masked for the audio-only copy of each utterance). Each finished run is appended to ``results.jsonl`` at
once, and a re-run skips finished runs.

Method zoo hooks: an objective's required constructor arguments that only the run knows (``embed_dim``,
reweighting's ``weights``) are derived here; a :class:`~fairser.objectives.stages.StagedObjective` may
change the training set before training (``augment``: CO-VADA, CFA); the ``groups`` option trains group
objectives on inferred genders (IDI), inferred once per benchmark in :func:`prepare_data`.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from fairser.config import BenchmarkConfig, GroupsConfig, ObjectiveSpec
from fairser.data.manifest import read_manifest, resolve_audio_paths
from fairser.progress import progress_bar
from fairser.results import ResultsStore, comparison_table, jsonable, render_comparison
from fairser.results.rows import evaluate_run, predictions_table, run_fields
from fairser.train import ArrayDataset

__all__ = [
    "PreparedData",
    "RunSpec",
    "execute_run",
    "plan_runs",
    "prepare_data",
    "run_benchmark",
]

_GENDER_CODE = {"male": 0, "female": 1, "unknown": -1}


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    setting: str  # "audio", "audio+text" or "joint"
    objective: ObjectiveSpec
    seed: int
    run_id: str


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


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _dump(model, *, unless_default: dict[str, Any]) -> dict[str, Any]:
    """``model_dump`` without the given (newer) fields while they hold their default, so run ids of
    configs that do not use them stay what they were before those fields existed (results resume)."""
    out = model.model_dump(mode="json")
    for key, default in unless_default.items():
        if key in out and out[key] == default:
            del out[key]
    return out


def _effective_groups(spec: ObjectiveSpec, config: BenchmarkConfig) -> GroupsConfig:
    return spec.groups if spec.groups is not None else config.groups


def plan_runs(config: BenchmarkConfig) -> list[RunSpec]:
    """Every (setting, objective, seed) of the grid, with a run id that changes when its inputs change."""
    settings = ["joint"] if config.joint_modalities else list(config.modalities)
    corpus = config.corpus.model_dump(mode="json")
    if corpus.get("cross") and corpus["cross"].get("adapt_fraction") == 0.0:
        del corpus["cross"]["adapt_fraction"]
    shared = {
        "corpus": corpus,
        "features": config.features.model_dump(mode="json", exclude={"n_jobs", "cache_dir", "on_error"}),
        "languages": list(config.languages),
        "modalities": list(config.modalities),
        "train": config.train.model_dump(mode="json"),
        "evaluation": _dump(config.evaluation, unless_default={"gender_probe": False}),
    }
    if config.backbone is not None:  # a changed backbone (model, LoRA, lr, ...) must not reuse old runs
        shared["backbone"] = config.backbone.model_dump(mode="json")
    runs = []
    for setting in settings:
        for spec in config.objectives:
            groups = _effective_groups(spec, config)
            obj = _dump(spec, unless_default={"groups": None, "sampler": None})
            if groups.inferred:
                obj["groups"] = groups.model_dump(mode="json")
            for seed in config.seeds:
                key = _hash({**shared, "setting": setting, "objective": obj, "seed": seed})
                name = spec.display.replace(" ", "_").replace("/", "_")
                runs.append(RunSpec(setting, spec, seed, f"{setting}__{name}__seed{seed}__{key}"))
    return runs


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
        manifest = read_manifest(corpus.path, labels=corpus.labels)
        source = f"{', '.join(sorted(set(manifest['corpus'])))} ({corpus.path})"
    else:
        from fairser.data.corpora import import_corpus

        parts = []
        for src in corpus.sources:
            res = import_corpus(
                src.name,
                src.path,
                target=corpus.target,
                split=corpus.split,
                seed=corpus.split_seed,
                fractions=corpus.split_fractions,
                **src.options,
            )
            dropped = ", ".join(f"{k}: {v}" for k, v in res.dropped.items()) or "none"
            console.print(f"imported {src.name}: {len(res.manifest)} utterances (dropped: {dropped})")
            parts.append(res.manifest)
        manifest = pd.concat(parts, ignore_index=True)
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
        groups = _effective_groups(spec, config)
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
        raise ValueError(
            f"labels {unknown_labels} are not in the configured label set {list(config.corpus.labels)}"
        )
    missing_langs = sorted(set(config.languages) - set(manifest["language"]))
    if missing_langs:
        raise ValueError(
            f"languages {missing_langs} are not in the corpus (it has {sorted(set(manifest['language']))})"
        )
    manifest = manifest[manifest["language"].isin(config.languages)].reset_index(drop=True)
    for lang, sub in manifest.groupby("language"):
        genders = set(sub["gender"]) - {"unknown"}
        if len(genders) < 2:
            notes.append(
                f"language {lang!r} has only {sorted(genders) or 'unknown'} speakers: its gender gaps are undefined"
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
    if audio.failures:
        shown = "; ".join(f"{p}: {r}" for p, r in audio.failures[:10])
        more = f" (and {len(audio.failures) - 10} more)" if len(audio.failures) > 10 else ""
        notes.append(f"skipped {len(audio.failures)} unreadable audio file(s): {shown}{more}")
        console.print(f"[yellow]warning:[/] {notes[-1]}")
    keep = np.asarray(audio.ok, dtype=bool)
    manifest = manifest.loc[keep].reset_index(drop=True)
    audio_feats = np.asarray(audio.features, dtype=np.float32)[keep]
    kept_paths = [p for p, k in zip(paths, keep, strict=True) if k]

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
    )


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


def _normaliser(prepared: PreparedData, config: BenchmarkConfig):
    """``normalise(features, rows)``: audio features of manifest rows ``rows`` (or of files derived from them)
    standardised as ``train.normalise`` says: ``standard`` with the training rows' mean and std, ``per_corpus``
    with each corpus's own reference rows (:func:`_per_corpus_reference`), ``none`` unchanged."""
    m = prepared.manifest
    train_rows = np.flatnonzero((m["split"] == "train").to_numpy())
    if len(train_rows) == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    mode = config.train.normalise
    if mode == "none":
        return lambda x, rows: np.asarray(x, dtype=np.float32)
    if mode == "standard":
        mean, std = prepared.audio[train_rows].mean(0), prepared.audio[train_rows].std(0) + 1e-8
        return lambda x, rows: ((np.asarray(x) - mean) / std).astype(np.float32)
    corpus = m["corpus"].astype(str).to_numpy()
    stats = {
        name: (prepared.audio[ref].mean(0), prepared.audio[ref].std(0) + 1e-8)
        for name, (ref, _) in _per_corpus_reference(m).items()
    }

    def normalise(x, rows):
        x, which = np.asarray(x, dtype=np.float64), corpus[np.asarray(rows)]
        out = np.empty_like(x)
        for name, (mean, std) in stats.items():
            sel = which == name
            out[sel] = (x[sel] - mean) / std
        return out.astype(np.float32)

    return normalise


def _split_views(
    prepared: PreparedData, *, setting: str, config: BenchmarkConfig
) -> dict[str, tuple[ArrayDataset, pd.DataFrame]]:
    """ArrayDatasets (and their metadata rows) for train/valid/test of one setting."""
    m = prepared.manifest
    lang_index = {lang: i for i, lang in enumerate(config.languages)}
    label_index = {lab: i for i, lab in enumerate(prepared.labels)}
    modalities = list(config.modalities) if setting == "joint" else [setting]
    views: dict[str, tuple[ArrayDataset, pd.DataFrame]] = {}
    normalise = _normaliser(prepared, config)
    splits = ["train", "valid", "test"] + (["adapt"] if (m["split"] == "adapt").any() else [])
    for split in splits:
        rows = np.flatnonzero((m["split"] == split).to_numpy())
        parts, metas = [], []
        for mod_i, modality in enumerate(modalities):
            meta = m.iloc[rows].copy()
            meta["modality"] = modality
            meta["row"] = rows  # manifest row (indexes prepared.paths / prepared.audio)
            lang = meta["language"].map(lang_index).to_numpy()
            domain = lang * len(modalities) + mod_i
            parts.append((rows, domain, modality == "audio+text"))
            metas.append(meta)
        meta = pd.concat(metas, ignore_index=True)
        rows_all = np.concatenate([p[0] for p in parts])
        use_text = any(p[2] for p in parts)
        views[split] = (
            ArrayDataset(
                audio=normalise(prepared.audio[rows_all], rows_all),
                text=prepared.text[rows_all] if use_text else None,
                text_mask=np.concatenate([np.full(len(p[0]), p[2]) for p in parts]) if use_text else None,
                y=meta["emotion"].map(label_index).to_numpy(),
                domain=np.concatenate([p[1] for p in parts]),
                gender=meta["gender"].map(_GENDER_CODE).to_numpy(),
            ),
            meta,
        )
    return views


def _domain_names(setting: str, config: BenchmarkConfig) -> list[str]:
    modalities = list(config.modalities) if setting == "joint" else [setting]
    return [f"{lang}/{mod}" for lang in config.languages for mod in modalities]


def execute_run(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig
) -> tuple[dict[str, Any], pd.DataFrame, list[dict[str, float]]]:
    """Train, predict and evaluate one run; returns its results row, test predictions and step logs."""
    if config.backbone is not None:  # a raw-audio backbone (Qwen2-Audio, SSL): fairser.scale trains it
        from fairser.scale.bench import execute_backbone_run

        return execute_backbone_run(spec, prepared, config)
    import torch

    from fairser.models import build_head
    from fairser.objectives import build_objective
    from fairser.objectives.stages import RunData, StagedObjective
    from fairser.train import fit, predict_embedding, predict_proba

    t0 = time.perf_counter()
    views = _split_views(prepared, setting=spec.setting, config=config)
    train, train_meta = views["train"]
    groups_row = apply_inferred_groups(spec, prepared, config, train, train_meta)
    train_config = config.train
    if spec.objective.sampler is not None:
        train_config = train_config.model_copy(update={"sampler": spec.objective.sampler})
    torch.manual_seed(spec.seed)
    model = build_head(
        use_text=train.text is not None,
        audio_dim=train.audio.shape[1],
        text_dim=0 if train.text is None else train.text.shape[1],
        n_classes=len(prepared.labels),
        hidden=config.train.hidden,
        dropout=config.train.dropout,
    )
    initial_model = copy.deepcopy(model)
    n_domains = len(_domain_names(spec.setting, config))
    objective = build_objective(
        spec.objective.name,
        n_domains=n_domains,
        n_classes=len(prepared.labels),
        **_derived_params(spec.objective, model=model, train=train),
        **spec.objective.params,
    )
    n_train_before = len(train)
    if isinstance(objective, StagedObjective):
        train = objective.augment(
            data=RunData(
                train=train,
                train_meta=train_meta,
                views={k: v for k, v in views.items() if k != "train"},
                audio_paths=prepared.paths,
                featurize=_featurizer(prepared, config),
                cache_dir=Path(config.features.cache_dir),
                config=config,
                seed=spec.seed,
                new_model=lambda: copy.deepcopy(initial_model),
                fit=fit,
                predict_proba=predict_proba,
            )
        )
    result = fit(
        model=model,
        objective=objective,
        train=train,
        valid=views["valid"][0],
        config=train_config,
        seed=spec.seed,
    )

    test, meta = views["test"]
    proba = predict_proba(result.model, test)
    pred = predictions_table(meta=meta, proba=proba, labels=prepared.labels, spec=spec)
    metrics, eval_notes = evaluate_run(
        pred, labels=prepared.labels, evaluation=config.evaluation, seed=spec.seed
    )
    row = {
        **run_fields(spec=spec, result=result),
        "elapsed_s": time.perf_counter() - t0,
        **metrics,
        "notes": eval_notes,
    }
    # method zoo extras (absent for plain objectives, so older rows and tables are unchanged)
    if groups_row is not None:
        row["groups"] = groups_row
    if spec.objective.sampler is not None:
        row["sampler"] = spec.objective.sampler
    if isinstance(objective, StagedObjective):
        row["method"] = jsonable(objective.summary())
        row["stages"] = jsonable(result.stages)
        row["n_train"] = {"original": n_train_before, "used": len(train)}
    if config.evaluation.gender_probe:
        from fairser.methods.probe import gender_probe

        gender_code = meta["gender"].map(_GENDER_CODE).to_numpy()
        speakers = (meta["corpus"].astype(str) + "/" + meta["speaker"].astype(str)).to_numpy()
        emb = predict_embedding(result.model, test)
        row["gender_probe"] = gender_probe(
            embedding=emb, gender=gender_code, speaker=speakers, seed=spec.seed
        ).as_dict()
        row["gender_probe_input"] = gender_probe(
            embedding=test.audio, gender=gender_code, speaker=speakers, seed=spec.seed
        ).as_dict()
    return row, pred, result.step_logs


def apply_inferred_groups(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig, train: Any, meta: pd.DataFrame
) -> dict[str, Any] | None:
    """IDI: replace (``inferred``) or complete (``fill``) the training rows' gender in place; returns the
    record for the results row (agreement with the true labels over the training rows).

    ``train`` is any training set with a ``gender`` code array (an ``ArrayDataset`` of cached features or a
    backbone's ``AudioDataset``); ``meta`` its rows' metadata with the manifest ``row`` of each."""
    groups = _effective_groups(spec.objective, config)
    if not groups.inferred:
        return None
    from fairser.methods.idi import gender_agreement

    inferred = prepared.inferred.get(groups.key())
    if inferred is None:
        raise RuntimeError(
            f"no inferred genders for groups {groups.key()!r}; prepare_data did not infer them"
        )
    codes = inferred.gender[meta["row"].to_numpy()]
    true = np.asarray(train.gender)
    speakers = (meta["corpus"].astype(str) + "/" + meta["speaker"].astype(str)).to_numpy()
    train.gender = codes if groups.source == "inferred" else np.where(true >= 0, true, codes)
    return {
        **groups.model_dump(mode="json"),
        "agreement_train": gender_agreement(true=true, inferred=codes, speaker=speakers),
        "agreement_all": dict(inferred.agreement),
        "changed_train_rows": int((np.asarray(train.gender) != true).sum()),
    }


def _derived_params(spec: ObjectiveSpec, *, model, train: ArrayDataset) -> dict[str, Any]:
    """Required constructor arguments only the run knows: ``embed_dim`` (the model's shared embedding) and
    ``weights`` (reweighting: Kamiran-Calders weights of this training set)."""
    import torch

    from fairser.objectives import OBJECTIVES

    params = inspect.signature(OBJECTIVES[spec.name].__init__).parameters
    required = [
        p.name
        for p in params.values()
        if p.kind is p.KEYWORD_ONLY and p.default is p.empty and p.name not in ("n_domains", "n_classes")
    ]
    out: dict[str, Any] = {}
    for name in required:
        if name in spec.params:
            continue
        if name == "embed_dim":
            with torch.no_grad():
                b = train.tensors(slice(0, 1))
                out[name] = int(model.eval()(b["audio"], b["text"], b["text_mask"]).embedding.shape[1])
            model.train()
        elif name == "weights":
            from fairser.objectives.reweighting import reweighing_weights

            out[name] = reweighing_weights(domain=train.domain, sensitive=train.gender, y=train.y)
        else:
            raise ValueError(
                f"objective {spec.name!r} needs params.{name}; the benchmark cannot derive it, set it in the config"
            )
    return out


def _featurizer(prepared: PreparedData, config: BenchmarkConfig):
    """``featurize(paths, rows=...) -> (features, ok)`` through the run's encoder and cache, each file normalised
    like the manifest row it derives from (``rows``)."""
    normalise = _normaliser(prepared, config)

    def featurize(paths, *, rows):
        from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features

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


_WORKER: dict[str, Any] = {}
_WORKER_PRELOAD = [
    "fairser.bench.runner",
    "fairser.metrics",
    "fairser.models",
    "fairser.objectives",
    "fairser.train",
    "torch._dynamo",  # imported by the first torch.optim.AdamW(...)
]


def _worker_init(prepared: PreparedData, config: BenchmarkConfig) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["prepared"], _WORKER["config"] = prepared, config


def _worker_run(spec: RunSpec):
    return execute_run(spec, _WORKER["prepared"], _WORKER["config"])


def _save_run(out_dir: Path, spec: RunSpec, row, pred: pd.DataFrame, step_logs) -> None:
    run_dir = out_dir / "runs" / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    pred.to_csv(run_dir / "predictions.csv", index=False)
    pd.DataFrame(step_logs).to_csv(run_dir / "train_log.csv", index=False)


def run_benchmark(
    config: BenchmarkConfig, *, progress: bool = True, console: Console | None = None
) -> pd.DataFrame:
    """Run (or resume) the whole grid; returns the paper-style table and writes everything to ``output_dir``.

    Writes ``results.jsonl`` (one row per run, appended as each finishes), ``runs/<run_id>/predictions.csv``
    (the public predictions table, also the input of ``fairser audit``), ``table.md`` / ``table.csv`` and
    ``benchmark.json`` (config, data source, stage timings).
    """
    from fairser.results.tables import paper_table, render_table

    console = console or Console()
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(_yaml(config))
    t_start = time.perf_counter()
    prepared = prepare_data(config, progress=progress, console=console)
    store = ResultsStore(out_dir / "results.jsonl")
    runs = plan_runs(config)
    done = store.finished()
    todo = [r for r in runs if r.run_id not in done]
    if len(todo) < len(runs):
        console.print(
            f"resuming: {len(runs) - len(todo)} of {len(runs)} runs already finished in {store.path}"
        )
    t0 = time.perf_counter()
    failures: list[str] = []
    with progress_bar(enabled=progress, console=console) as bar:
        task = bar.add_task("training runs", total=len(todo))
        if config.n_jobs > 1 and len(todo) > 1:
            # forkserver with the heavy modules preloaded: each worker forks from a process that has already
            # imported torch and fairser (spawn paid 3-5 CPU-s of imports per worker); safe, unlike plain fork
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(_WORKER_PRELOAD)
            with ProcessPoolExecutor(
                max_workers=min(config.n_jobs, len(todo)),
                mp_context=ctx,
                initializer=_worker_init,
                initargs=(prepared, config),
            ) as pool:
                futures = {pool.submit(_worker_run, spec): spec for spec in todo}
                for fut in as_completed(futures):
                    spec = futures[fut]
                    exc = fut.exception()
                    _finish(spec, exc, None if exc else fut.result(), store, out_dir, failures, console)
                    bar.advance(task)
        else:
            for spec in todo:
                try:
                    out, exc = execute_run(spec, prepared, config), None
                except Exception as e:  # noqa: BLE001 - recorded and reported, other runs go on
                    out, exc = None, e
                _finish(spec, exc, out, store, out_dir, failures, console)
                bar.advance(task)
    timings = dict(prepared.timings)
    timings["training_and_evaluation"] = time.perf_counter() - t0
    planned = {s.run_id: i for i, s in enumerate(runs)}
    # in grid order, not finishing order, so the table is the same to the last digit on every run
    rows = sorted(
        (r for r in store.rows() if r["run_id"] in planned and r.get("status") == "ok"),
        key=lambda r: planned[r["run_id"]],
    )
    t0 = time.perf_counter()
    table = paper_table(rows, baseline=config.objectives[0].display)
    text = render_table(
        table, synthetic=prepared.synthetic, source=prepared.source, n_seeds=len(config.seeds)
    )
    (out_dir / "table.md").write_text(text)
    table.to_csv(out_dir / "table.csv", index=False)
    if len(config.objectives) > 1 and rows:
        _write_comparison(rows, out_dir=out_dir, config=config, prepared=prepared)
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    meta = {
        "name": config.name,
        "synthetic": prepared.synthetic,
        "source": prepared.source,
        "sampler": config.train.sampler,
        "n_runs": len(runs),
        "n_finished": len(rows),
        "failures": failures,
        "notes": prepared.notes,
        "timings_s": timings,
    }
    (out_dir / "benchmark.json").write_text(json.dumps(meta, indent=2, default=str))
    print(text)  # plain print: a Markdown table must not be re-wrapped to the terminal width
    if failures:
        console.print(f"[red]{len(failures)} run(s) failed[/]: " + "; ".join(failures))
    return table


def _write_comparison(
    rows: list[dict[str, Any]], *, out_dir: Path, config: BenchmarkConfig, prepared: PreparedData
) -> None:
    """``comparison.md`` / ``comparison.csv`` (one line per objective) and ``tradeoff.png`` (W-F1 against
    worst-domain gap, one point per objective, mean ± std over seeds; :func:`fairser.report.plot_tradeoff`)."""
    baseline = config.objectives[0].display
    table = comparison_table(rows, baseline=baseline, order=[o.display for o in config.objectives])
    table.to_csv(out_dir / "comparison.csv", index=False)
    (out_dir / "comparison.md").write_text(
        render_comparison(table, synthetic=prepared.synthetic, source=prepared.source, baseline=baseline)
    )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from fairser.report import plot_tradeoff, tradeoff_points

    points = tradeoff_points(rows)
    rank = {label: i for i, label in enumerate(o.display for o in config.objectives)}
    points = points.sort_values("objective", key=lambda c: c.map(rank), kind="stable").reset_index(drop=True)
    if len(config.objectives) <= 6:
        fig = plot_tradeoff(points, synthetic=prepared.synthetic, source=prepared.source)
    else:  # a zoo: a larger panel per setting and the legend beside it, so points and labels stay readable
        settings = list(dict.fromkeys(points["setting"]))
        fig = Figure(figsize=(9.5, 6.2 * len(settings)))
        FigureCanvasAgg(fig)
        for i, setting in enumerate(settings):
            ax = fig.add_subplot(len(settings), 1, i + 1)
            plot_tradeoff(points[points["setting"] == setting], ax=ax)
            handles, labels = ax.get_legend_handles_labels()
            ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=True)
            ax.set_title(
                ("SYNTHETIC DATA — " if prepared.synthetic else "")
                + f"W-F1 vs worst-domain gender gap ({setting}); mean ± std over seeds",
                fontsize=10,
            )
        fig.text(0.01, 0.005, f"Data: {prepared.source}", fontsize=7)
        fig.subplots_adjust(left=0.08, right=0.7, top=0.94, bottom=0.1)
    fig.savefig(out_dir / "tradeoff.png", dpi=110)


def _finish(
    spec, exc, out, store: ResultsStore, out_dir: Path, failures: list[str], console: Console
) -> None:
    if exc is not None:
        failures.append(f"{spec.run_id}: {type(exc).__name__}: {exc}")
        store.append({"run_id": spec.run_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"})
        console.print(f"[red]run failed[/] {spec.run_id}: {type(exc).__name__}: {exc}")
        return
    row, pred, step_logs = out
    _save_run(out_dir, spec, row, pred, step_logs)
    store.append(row)


def _yaml(config: BenchmarkConfig) -> str:
    import yaml

    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
