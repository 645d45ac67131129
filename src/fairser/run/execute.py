"""One run of the grid, for either backend: views -> groups -> objective -> stages -> fit -> predict -> row.

:func:`execute_run` is the one way from a grid cell to a results row. What differs between a head on cached
features and a raw-audio backbone sits in the backend (:mod:`fairser.run.backends`,
:mod:`fairser.run.backbone`): its datasets, its :class:`~fairser.objectives.stages.Trainer` and its part of
the row. Objectives declare what a run must supply to them (``requires``, e.g. ``embed_dim``,
:func:`derived_params`); staged methods (JTT, LfF, CO-VADA, CFA) get the training set (``augment``) and
their pre-stages (``prepare``) here, so the training loops know nothing about them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fairser.config import BenchmarkConfig, ObjectiveSpec
from fairser.jsonable import jsonable
from fairser.results.rows import evaluate_run, predictions_table, run_fields
from fairser.run.plan import RunSpec
from fairser.run.prepare import PreparedData, effective_groups, featurizer
from fairser.run.views import run_grouper, split_views

__all__ = [
    "FittedRun",
    "RunViews",
    "apply_inferred_groups",
    "derived_params",
    "execute_run",
    "fit_run",
    "fit_staged",
    "make_backend",
    "run_views",
]


def make_backend(prepared: PreparedData, config: BenchmarkConfig, *, progress: bool = False):
    """The run's backend: a raw-audio backbone with ``config.backbone``, else a head on cached features."""
    if config.backbone is not None:
        from fairser.run.backbone import BackboneBackend

        return BackboneBackend(prepared, config, progress=progress)
    from fairser.run.backends import FeatureBackend

    return FeatureBackend(prepared, config)


def derived_params(spec: ObjectiveSpec, *, embed_dim: Callable[[], int]) -> dict[str, Any]:
    """The constructor arguments an objective ``requires`` that only the run knows (unless set in
    ``params``): ``embed_dim``, the width of the model's shared embedding (``embed_dim()``)."""
    from fairser.objectives import OBJECTIVES

    out: dict[str, Any] = {}
    for name in OBJECTIVES[spec.name].requires:
        if name in spec.params:
            continue
        if name != "embed_dim":
            raise ValueError(
                f"objective {spec.name!r} needs params.{name}; the benchmark cannot derive it, set it in the config"
            )
        out[name] = embed_dim()
    return out


def apply_inferred_groups(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig, train: Any, meta: pd.DataFrame
) -> dict[str, Any] | None:
    """IDI: replace (``inferred``) or complete (``fill``) the training rows' gender in place; returns the
    record for the results row (agreement with the true labels over the training rows).

    ``train`` is either backend's training set (its ``sensitive`` ids are gender codes: IDI runs only with
    ``sensitive: [gender]``, which the config checks); ``meta`` its rows' metadata with the manifest ``row``
    of each."""
    groups = effective_groups(spec.objective, config)
    if not groups.inferred:
        return None
    if config.sensitive != ("gender",):
        raise ValueError(f"IDI infers gender only; it cannot stand in for sensitive {list(config.sensitive)}")
    from fairser.methods.idi import gender_agreement

    inferred = prepared.inferred.get(groups.key())
    if inferred is None:
        raise RuntimeError(
            f"no inferred genders for groups {groups.key()!r}; prepare_data did not infer them"
        )
    codes = inferred.gender[meta["row"].to_numpy()]
    true = np.asarray(train.sensitive)
    speakers = (meta["corpus"].astype(str) + "/" + meta["speaker"].astype(str)).to_numpy()
    train.sensitive = codes if groups.source == "inferred" else np.where(true >= 0, true, codes)
    return {
        **groups.model_dump(mode="json"),
        "agreement_train": gender_agreement(true=true, inferred=codes, speaker=speakers),
        "agreement_all": dict(inferred.agreement),
        "changed_train_rows": int((np.asarray(train.sensitive) != true).sum()),
    }


def fit_staged(*, objective: Any, context: Any) -> Any:
    """The pre-stages of a staged objective (``prepare``), then the main training of ``context.model``.

    ``context`` is a :class:`~fairser.objectives.stages.StageContext` (its trainer, training and validation
    sets); a plain objective goes straight to the main training. Returns the trainer's result.
    """
    from fairser.objectives.stages import StagedObjective

    if isinstance(objective, StagedObjective):
        objective.prepare(context=context)
    return context.trainer.fit(
        model=context.model, objective=objective, train=context.train, valid=context.valid, main=True
    )


@dataclass
class FittedRun:
    """A trained run before prediction (:func:`fit_run`): what :func:`execute_run` predicts and evaluates with,
    and what ``fairser robustness`` predicts degraded test audio with."""

    spec: RunSpec
    prepared: PreparedData
    backend: Any
    trainer: Any
    result: Any
    views: dict[str, Any]
    labels: tuple[str, ...]
    grouper: Any
    objective: Any
    context: Any
    staged: bool
    n_train_before: int
    train_used: int
    groups_row: dict[str, Any] | None
    t0: float
    augmentation: dict[str, Any] | None = None


@dataclass
class RunViews:
    """A grid cell's data before any training (:func:`run_views`)."""

    prepared: PreparedData
    backend: Any
    grouper: Any
    views: dict[str, Any]


def run_views(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig, *, progress: bool = False
) -> RunViews:
    """A grid cell's fold of the data, its backend (checked against the cell) and grouper, and its split views
    (``views[split] = (dataset, meta)``): what :func:`fit_run` trains on, and what a saved model of the run is
    applied to."""
    if spec.fold is not None:  # kfold / loso: this fold's train / valid / test speakers
        prepared = prepared.for_fold(spec.fold)
    backend = make_backend(prepared, config, progress=progress)
    backend.check(spec)
    grouper = run_grouper(prepared.manifest, setting=spec.setting, config=config)
    views = split_views(
        prepared.manifest,
        setting=spec.setting,
        config=config,
        grouper=grouper,
        labels=tuple(prepared.labels),
        make=backend.dataset,
    )
    return RunViews(prepared=prepared, backend=backend, grouper=grouper, views=views)


def fit_run(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig, *, progress: bool = False
) -> FittedRun:
    """Build one grid cell's views, objective and stages and train its model (everything before prediction)."""
    from fairser.objectives import build_objective
    from fairser.objectives.stages import RunData, StageContext, StagedObjective

    t0 = time.perf_counter()
    cell = run_views(spec, prepared, config, progress=progress)
    prepared, backend, grouper, views = cell.prepared, cell.backend, cell.grouper, cell.views
    labels = tuple(prepared.labels)
    train, train_meta = views["train"]
    valid = views["valid"][0]
    augmentation = None
    if config.degrade_augment is not None:  # training-time degradation (METHODS.md §6)
        augmentation = backend.degrade_train(spec=spec, train=train, meta=train_meta, progress=progress)
    groups_row = apply_inferred_groups(spec, prepared, config, train, train_meta)  # IDI, if configured
    trainer = backend.trainer(spec=spec, train=train)
    staged, n_train_before, objective = False, len(train), None
    if getattr(backend, "zero_shot", False):  # an audio LLM scored as it is: no objective, no training
        context, result = None, trainer.zero_shot()
    else:
        context = StageContext(
            trainer=trainer,
            train=train,
            valid=valid,
            seed=spec.seed,
            stage_dir=backend.stage_dir(spec),
            write_files=backend.is_main_process,
        )
        # the main model is built only when needed: here if the objective needs its embedding width, else after
        # the pre-stages (so a backbone's JTT identification model is freed before the main one exists)
        derived = derived_params(spec.objective, embed_dim=lambda: backend.embed_dim(context.model, train))
        objective = build_objective(
            spec.objective.name,
            n_domains=grouper.n_domains,
            n_classes=len(labels),
            n_values=grouper.n_values,
            **derived,
            **spec.objective.params,
        )
        speakers = (train_meta["corpus"].astype(str) + "/" + train_meta["speaker"].astype(str)).to_numpy()
        objective.set_train_speakers(speakers=speakers)  # e.g. ERM-MinMaxGAP's held-out folds of speakers
        staged = isinstance(objective, StagedObjective)
        n_train_before = len(train)
        if staged:
            train = objective.augment(
                data=RunData(
                    train=train,
                    train_meta=train_meta,
                    views={k: v for k, v in views.items() if k != "train"},
                    audio_paths=prepared.paths,
                    featurize=featurizer(prepared, config),
                    cache_dir=Path(config.features.cache_dir),
                    cross_corpus=config.corpus.cross is not None,
                    sensitive_values=grouper.values,
                    trainer=trainer,
                    seed=spec.seed,
                    progress=progress,
                )
            )
            context.train = train
        result = fit_staged(objective=objective, context=context)
    return FittedRun(
        spec=spec,
        prepared=prepared,
        backend=backend,
        trainer=trainer,
        result=result,
        views=views,
        labels=labels,
        grouper=grouper,
        objective=objective,
        context=context,
        staged=staged,
        n_train_before=n_train_before,
        train_used=len(train),
        groups_row=groups_row,
        t0=t0,
        augmentation=augmentation,
    )


def execute_run(
    spec: RunSpec, prepared: PreparedData, config: BenchmarkConfig, *, progress: bool = False
) -> tuple[dict[str, Any], pd.DataFrame, list[dict[str, float]]]:
    """Train, predict and evaluate one grid cell; returns its results row, test predictions and step logs.

    Every process of an ``accelerate launch`` (backbone runs) calls this for the same run; only the main
    process evaluates (the others return an empty row, table and log).
    """
    fitted = fit_run(spec, prepared, config, progress=progress)
    prepared, backend, trainer, result = fitted.prepared, fitted.backend, fitted.trainer, fitted.result
    views, labels, grouper, objective = fitted.views, fitted.labels, fitted.grouper, fitted.objective
    context, staged, t0, groups_row = fitted.context, fitted.staged, fitted.t0, fitted.groups_row
    n_train_before = fitted.n_train_before
    test, meta = views["test"]
    proba = trainer.predict_proba(result.model, test)
    extras = backend.finish(spec=spec, result=result)
    if not backend.is_main_process:  # the main process evaluates and reports; the others are done
        return {}, pd.DataFrame(), []
    pred = predictions_table(meta=meta, proba=proba, labels=labels, spec=spec, sensitive=config.sensitive)
    evaluation = config.evaluation
    if spec.fold is not None and config.protocol == "loso":
        # one test speaker: a speaker-cluster bootstrap of one cluster and a permutation test without a second
        # group say nothing; the cell's pooled row (every speaker once) carries the CIs and p-values
        evaluation = evaluation.model_copy(update={"n_boot": 0, "n_perm": 0})
    metrics, notes = evaluate_run(
        pred, labels=labels, evaluation=evaluation, seed=spec.seed, sensitive=config.sensitive
    )
    if evaluation is not config.evaluation:
        notes.append("leave-one-speaker-out fold: no bootstrap CIs or permutation tests (see the pooled row)")
    row = {
        **run_fields(spec=spec, result=result),
        # e.g. MinMaxGAP's final_lambda, mean_R_last_epoch
        **(objective.run_summary(result.step_logs) if objective is not None else {}),
        "elapsed_s": time.perf_counter() - t0,
        **metrics,
        "notes": notes,
        **extras,
    }
    if spec.fold is not None:  # (absent under holdout, so rows stay as they were)
        fold = prepared.folds[spec.fold]
        pred["fold"] = spec.fold
        row.update(fold=spec.fold, pool_id=spec.pool_id)
        row["fold_speakers"] = {"test": list(fold.test_speakers), "valid": list(fold.valid_speakers)}
    if spec.objective.head is not None:
        row["head"] = spec.objective.head
    if config.sensitive != ("gender",):  # (absent for gender, so rows stay as they were)
        row["sensitive"] = {"columns": list(config.sensitive), "values": list(grouper.values)}
    # method zoo extras (absent for plain objectives, so older rows and tables are unchanged)
    if groups_row is not None:
        row["groups"] = groups_row
    if spec.objective.sampler is not None:
        row["sampler"] = spec.objective.sampler
    if fitted.augmentation is not None:
        row["degrade_augment"] = fitted.augmentation
    if staged:
        row["method"] = jsonable(objective.summary())
        row["stages"] = jsonable(context.stages)
        row["n_train"] = {"original": n_train_before, "used": fitted.train_used}
    if config.evaluation.gender_probe:
        _gender_probe(row, notes, backend=backend, model=result.model, test=test, meta=meta, seed=spec.seed)
    return row, pred, result.step_logs


def _gender_probe(row, notes, *, backend, model, test, meta: pd.DataFrame, seed: int) -> None:
    """``evaluation.gender_probe``: a linear gender probe on the learned test embedding and on the inputs
    (gender only: the config refuses it with another sensitive attribute)."""
    from fairser.methods.probe import gender_probe

    emb = backend.embedding(model, test)
    if emb is None:
        notes.append("gender_probe is not computed for backbone runs")
        return
    gender_code = np.asarray(test.sensitive)  # gender codes (male 0, female 1, unknown -1)
    speakers = (meta["corpus"].astype(str) + "/" + meta["speaker"].astype(str)).to_numpy()
    row["gender_probe"] = gender_probe(
        embedding=emb, gender=gender_code, speaker=speakers, seed=seed
    ).as_dict()
    row["gender_probe_input"] = gender_probe(
        embedding=test.audio, gender=gender_code, speaker=speakers, seed=seed
    ).as_dict()
