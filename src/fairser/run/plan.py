"""The benchmark grid: every (setting, objective, seed) cell with a run id that changes when its inputs change.

Run ids are hashes of everything a run depends on; fields added after the first release are left out of the
hash while they hold their default (``sensitive: [gender]``, ``evaluation.gender_probe: false``, an
objective's ``groups`` / ``sampler`` / ``head``, ``train.head: mlp``, ``protocol: holdout``, the backbone's
zero-shot fields), so existing results resume.

Under a cross-validated protocol (``kfold``, ``loso``) every cell runs once per fold (the fold is in its run
id, so an interrupted grid resumes fold by fold), and the folds of a cell share a ``pool_id``: the run id of
the row pooling their out-of-fold predictions.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
import json
from dataclasses import dataclass
from typing import Any

from fairser.config import BenchmarkConfig, ObjectiveSpec
from fairser.errors import UserError
from fairser.run.prepare import effective_groups

__all__ = ["RunSpec", "check_objectives", "plan_runs"]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    setting: str  # "audio", "audio+text" or "joint"
    objective: ObjectiveSpec
    seed: int
    run_id: str
    #: The fold (``kfold``, ``loso``: 0 .. n_folds - 1), None under ``holdout``.
    fold: int | None = None
    #: Run id of the pooled row of this cell's folds (None under ``holdout``).
    pool_id: str | None = None
    #: Hash of the settings every run of the config shares (corpus, features, languages, training, ...): rows
    #: of different configs in one results folder are refused by the tables (:func:`fairser.results.one_config`).
    config_id: str | None = None


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


def check_objectives(config: BenchmarkConfig) -> None:
    """Every objective of ``config`` must be registered (the config layer cannot check: it sits below the
    objectives), and every ``params`` key must be a parameter of its objective. Raises a
    :class:`~fairser.errors.UserError` naming the unknown name or parameter, the config key and the fix."""
    from fairser.objectives import OBJECTIVES

    for i, spec in enumerate(config.objectives):
        if spec.name == "zero_shot" and config.backbone is not None and config.backbone.zero_shot:
            continue  # the zero-shot "objective": no training (the config checks it stands alone)
        if spec.name not in OBJECTIVES:
            raise UserError(
                f"unknown objective {spec.name!r}; registered: {sorted(OBJECTIVES)}",
                where=f"config key objectives.{i}.name",
                fix="use one of the registered names",
            )
        params = inspect.signature(OBJECTIVES[spec.name].__init__).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            continue
        allowed = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
        allowed = [n for n in allowed if n not in ("n_domains", "n_classes", "n_values")]
        for key in spec.params:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                raise UserError(
                    f"objective {spec.name!r} has no parameter {key!r} (its parameters: {allowed or 'none'})",
                    where=f"config key objectives.{i}.params.{key}",
                    fix=f"did you mean {close[0]!r}?" if close else "remove it",
                )


def plan_runs(config: BenchmarkConfig, *, n_folds: int | None = None) -> list[RunSpec]:
    """Every (setting, objective, seed) of the grid, with a run id that changes when its inputs change; under
    ``kfold`` / ``loso`` one run per fold of each cell (``n_folds``: the number of folds the data gave,
    needed for ``loso``; ``kfold`` defaults to ``config.folds``)."""
    check_objectives(config)
    if config.protocol == "holdout":
        folds: list[int | None] = [None]
    else:
        n_folds = n_folds if n_folds is not None else (config.folds if config.protocol == "kfold" else None)
        if n_folds is None or n_folds < 1:
            raise ValueError(f"protocol {config.protocol!r} needs the number of folds the data gives")
        folds = list(range(n_folds))
    settings = ["joint"] if config.joint_modalities else list(config.modalities)
    corpus = config.corpus.model_dump(mode="json")
    if corpus.get("cross") and corpus["cross"].get("adapt_fraction") == 0.0:
        del corpus["cross"]["adapt_fraction"]
    shared = {
        "corpus": corpus,
        "features": config.features.model_dump(mode="json", exclude={"n_jobs", "cache_dir", "on_error"}),
        "languages": list(config.languages),
        "modalities": list(config.modalities),
        # (save_model keeps the model; it changes nothing the run computes, so never its id)
        "train": _dump(
            config.train.model_copy(update={"save_model": False}),
            unless_default={"head": "mlp", "save_model": False, "epoch_selection": "best"},
        ),
        "evaluation": _dump(config.evaluation, unless_default={"gender_probe": False}),
    }
    if config.sensitive != ("gender",):  # (absent for the default, so earlier run ids stay)
        shared["sensitive"] = list(config.sensitive)
    if config.protocol != "holdout":  # (absent for holdout, so earlier run ids stay)
        shared["protocol"] = {"name": config.protocol, "valid_speakers": config.valid_speakers}
        if config.protocol == "kfold":
            shared["protocol"]["folds"] = config.folds
    if config.degrade_augment is not None:  # (absent without augmentation, so earlier run ids stay)
        shared["degrade_augment"] = config.degrade_augment.model_dump(mode="json")
    if config.backbone is not None:  # a changed backbone (model, LoRA, lr, ...) must not reuse old runs
        # (the zero-shot fields, added later, are left out while they hold their default: earlier runs resume)
        shared["backbone"] = _dump(
            config.backbone,
            unless_default={
                "zero_shot": False,
                "prompt_language": "english",
                "instructions": None,
                "calibration": "none",
                "whisper_transcript": True,
            },
        )
    config_id = _hash(shared)
    runs = []
    for setting in settings:
        for spec in config.objectives:
            groups = effective_groups(spec, config)
            obj = _dump(spec, unless_default={"groups": None, "sampler": None, "head": None})
            if groups.inferred:
                obj["groups"] = groups.model_dump(mode="json")
            name = spec.display.replace(" ", "_").replace("/", "_")
            for seed in config.seeds:
                cell = {**shared, "setting": setting, "objective": obj, "seed": seed}
                if folds == [None]:
                    run_id = f"{setting}__{name}__seed{seed}__{_hash(cell)}"
                    runs.append(RunSpec(setting, spec, seed, run_id, config_id=config_id))
                    continue
                pool_id = f"{setting}__{name}__seed{seed}__pooled__{_hash(cell)}"
                for fold in folds:
                    run_id = f"{setting}__{name}__seed{seed}__fold{fold}__{_hash({**cell, 'fold': fold})}"
                    runs.append(
                        RunSpec(setting, spec, seed, run_id, fold=fold, pool_id=pool_id, config_id=config_id)
                    )
    return runs
