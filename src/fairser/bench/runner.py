"""The benchmark grid: corpus -> features -> one multilingual model per (setting, objective, seed).

As in the ERM-MinMaxGAP paper, one multilingual model is trained on all languages of a modality setting and
evaluated per language, so MinMaxGAP's max runs over the languages of that setting. With
``joint_modalities`` one model covers both settings (domains = language x modality; the transcript is
masked for the audio-only copy of each utterance). Each finished run is appended to ``results.jsonl`` at
once, and a re-run skips finished runs.
"""

from __future__ import annotations

import hashlib
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
from sklearn.metrics import f1_score

from fairser.bench.results import ResultsStore
from fairser.config import BenchmarkConfig, ObjectiveSpec
from fairser.data.manifest import read_manifest, resolve_audio_paths
from fairser.progress import progress_bar
from fairser.train import ArrayDataset

__all__ = ["PreparedData", "RunSpec", "plan_runs", "prepare_data", "run_benchmark", "execute_run"]

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


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def plan_runs(config: BenchmarkConfig) -> list[RunSpec]:
    """Every (setting, objective, seed) of the grid, with a run id that changes when its inputs change."""
    settings = ["joint"] if config.joint_modalities else list(config.modalities)
    shared = {
        "corpus": config.corpus.model_dump(mode="json"),
        "features": config.features.model_dump(mode="json", exclude={"n_jobs", "cache_dir", "on_error"}),
        "languages": list(config.languages),
        "modalities": list(config.modalities),
        "train": config.train.model_dump(mode="json"),
        "evaluation": config.evaluation.model_dump(mode="json"),
    }
    runs = []
    for setting in settings:
        for spec in config.objectives:
            for seed in config.seeds:
                key = _hash(
                    {**shared, "setting": setting, "objective": spec.model_dump(mode="json"), "seed": seed}
                )
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
    return manifest, False, source


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
    )


def _split_views(
    prepared: PreparedData, *, setting: str, config: BenchmarkConfig
) -> dict[str, tuple[ArrayDataset, pd.DataFrame]]:
    """ArrayDatasets (and their metadata rows) for train/valid/test of one setting."""
    m = prepared.manifest
    lang_index = {lang: i for i, lang in enumerate(config.languages)}
    label_index = {lab: i for i, lab in enumerate(prepared.labels)}
    modalities = list(config.modalities) if setting == "joint" else [setting]
    views: dict[str, tuple[ArrayDataset, pd.DataFrame]] = {}
    train_rows = np.flatnonzero((m["split"] == "train").to_numpy())
    if len(train_rows) == 0:
        raise ValueError("the corpus has no training rows (split == 'train')")
    mean = prepared.audio[train_rows].mean(0) if config.train.normalise == "standard" else 0.0
    std = prepared.audio[train_rows].std(0) + 1e-8 if config.train.normalise == "standard" else 1.0
    for split in ("train", "valid", "test"):
        rows = np.flatnonzero((m["split"] == split).to_numpy())
        parts, metas = [], []
        for mod_i, modality in enumerate(modalities):
            meta = m.iloc[rows].copy()
            meta["modality"] = modality
            lang = meta["language"].map(lang_index).to_numpy()
            domain = lang * len(modalities) + mod_i
            parts.append((rows, domain, modality == "audio+text"))
            metas.append(meta)
        meta = pd.concat(metas, ignore_index=True)
        rows_all = np.concatenate([p[0] for p in parts])
        use_text = any(p[2] for p in parts)
        views[split] = (
            ArrayDataset(
                audio=((prepared.audio[rows_all] - mean) / std).astype(np.float32),
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
    import torch

    from fairser.metrics import evaluate_predictions
    from fairser.models import build_head
    from fairser.objectives import build_objective
    from fairser.train import fit, predict_proba

    t0 = time.perf_counter()
    views = _split_views(prepared, setting=spec.setting, config=config)
    train, _ = views["train"]
    torch.manual_seed(spec.seed)
    model = build_head(
        use_text=train.text is not None,
        audio_dim=train.audio.shape[1],
        text_dim=0 if train.text is None else train.text.shape[1],
        n_classes=len(prepared.labels),
        hidden=config.train.hidden,
        dropout=config.train.dropout,
    )
    n_domains = len(_domain_names(spec.setting, config))
    objective = build_objective(
        spec.objective.name, n_domains=n_domains, n_classes=len(prepared.labels), **spec.objective.params
    )
    result = fit(
        model=model,
        objective=objective,
        train=train,
        valid=views["valid"][0],
        config=config.train,
        seed=spec.seed,
    )

    test, meta = views["test"]
    proba = predict_proba(result.model, test)
    pred = pd.DataFrame(
        {
            "id": meta["id"].to_numpy(),
            "split": "test",
            "y_true": meta["emotion"].to_numpy(),
            "y_pred": np.asarray(prepared.labels)[proba.argmax(1)],
            "gender": meta["gender"].to_numpy(),
            "language": meta["language"].to_numpy(),
            "modality": meta["modality"].to_numpy(),
            "speaker": meta["speaker"].to_numpy(),
            "corpus": meta["corpus"].to_numpy(),
        }
    )
    for i, lab in enumerate(prepared.labels):
        pred[f"prob_{lab}"] = proba[:, i]
    pred["objective"] = spec.objective.display
    pred["seed"] = spec.seed
    pred["setting"] = spec.setting
    pred["run_id"] = spec.run_id

    ev = config.evaluation
    evaluation = evaluate_predictions(
        pred,
        labels=list(prepared.labels),
        domain_cols=("language", "modality"),
        n_boot=ev.n_boot,
        n_perm=ev.n_perm,
        ci=ev.ci,
        min_samples=ev.min_samples,
        resample=ev.resample,
        seed=spec.seed,
    )
    domains = []
    for (lang, mod), sub in pred.groupby(["language", "modality"], sort=False):
        row: dict[str, Any] = {"language": lang, "modality": mod, "n": len(sub)}
        row["weighted_f1"] = float(
            f1_score(
                sub["y_true"],
                sub["y_pred"],
                labels=list(prepared.labels),
                average="weighted",
                zero_division=0,
            )
        )
        gaps = evaluation.gaps
        g = gaps[(gaps["language"] == lang) & (gaps["modality"] == mod)]
        for _, gr in g.iterrows():
            metric = gr["metric"]
            for col in ("gap", "signed_gap", "ci_low", "ci_high", "p_value", "reason"):
                if col in gr:
                    row[f"{metric}_{col}"] = gr[col]
        bg = evaluation.by_group
        b = bg[(bg["language"] == lang) & (bg["modality"] == mod) & (bg["metric"] == "weighted_f1")]
        for _, br in b.iterrows():
            row[f"weighted_f1_{br['gender']}"] = br["value"]
        domains.append(row)
    lam = [s.get("lambda") for s in result.step_logs if "lambda" in s]
    rvals = [s.get("R") for s in result.step_logs if "R" in s]
    row = {
        "run_id": spec.run_id,
        "status": "ok",
        "setting": spec.setting,
        "objective": spec.objective.name,
        "objective_label": spec.objective.display,
        "params": spec.objective.params,
        "seed": spec.seed,
        "best_epoch": result.best_epoch,
        "valid_score": result.best_score,
        "epochs_run": len(result.history),
        "final_lambda": lam[-1] if lam else None,
        "mean_R_last_epoch": float(np.mean(rvals[-max(1, len(rvals) // max(1, len(result.history))) :]))
        if rvals
        else None,
        "elapsed_s": time.perf_counter() - t0,
        "domains": domains,
        "overall_weighted_f1": float(
            f1_score(
                pred["y_true"],
                pred["y_pred"],
                labels=list(prepared.labels),
                average="weighted",
                zero_division=0,
            )
        ),
        "summary": evaluation.summary.to_dict(orient="records"),
        "notes": list(evaluation.notes),
    }
    return row, pred, result.step_logs


_WORKER: dict[str, Any] = {}


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
    from fairser.bench.table import paper_table, render_table

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
            ctx = mp.get_context("spawn")
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
    rows = [r for r in store.rows() if r["run_id"] in {s.run_id for s in runs} and r.get("status") == "ok"]
    t0 = time.perf_counter()
    table = paper_table(rows, baseline=config.objectives[0].display)
    text = render_table(
        table, synthetic=prepared.synthetic, source=prepared.source, n_seeds=len(config.seeds)
    )
    (out_dir / "table.md").write_text(text)
    table.to_csv(out_dir / "table.csv", index=False)
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
    console.print(text)
    if failures:
        console.print(f"[red]{len(failures)} run(s) failed[/]: " + "; ".join(failures))
    return table


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
