"""The benchmark grid: every (setting, objective, seed) cell with a run id that changes when its inputs change.

Run ids are hashes of everything a run depends on; fields added after the first release are left out of the
hash while they hold their default (``sensitive: [gender]``, ``evaluation.gender_probe: false``, an
objective's ``groups`` / ``sampler``), so existing results resume.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from fairser.config import BenchmarkConfig, ObjectiveSpec
from fairser.run.prepare import effective_groups

__all__ = ["RunSpec", "check_objectives", "plan_runs"]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    setting: str  # "audio", "audio+text" or "joint"
    objective: ObjectiveSpec
    seed: int
    run_id: str


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
    objectives). Raises ``ValueError`` naming the unknown one and the registered ones."""
    from fairser.objectives import OBJECTIVES

    for spec in config.objectives:
        if spec.name not in OBJECTIVES:
            raise ValueError(f"unknown objective {spec.name!r}; registered: {sorted(OBJECTIVES)}")


def plan_runs(config: BenchmarkConfig) -> list[RunSpec]:
    """Every (setting, objective, seed) of the grid, with a run id that changes when its inputs change."""
    check_objectives(config)
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
    if config.sensitive != ("gender",):  # (absent for the default, so earlier run ids stay)
        shared["sensitive"] = list(config.sensitive)
    if config.backbone is not None:  # a changed backbone (model, LoRA, lr, ...) must not reuse old runs
        shared["backbone"] = config.backbone.model_dump(mode="json")
    runs = []
    for setting in settings:
        for spec in config.objectives:
            groups = effective_groups(spec, config)
            obj = _dump(spec, unless_default={"groups": None, "sampler": None})
            if groups.inferred:
                obj["groups"] = groups.model_dump(mode="json")
            for seed in config.seeds:
                key = _hash({**shared, "setting": setting, "objective": obj, "seed": seed})
                name = spec.display.replace(" ", "_").replace("/", "_")
                runs.append(RunSpec(setting, spec, seed, f"{setting}__{name}__seed{seed}__{key}"))
    return runs
