"""Degraded audio features of a prepared benchmark: the babble pool, the conditions of a config, degraded
and normalised features of manifest rows, and training-time degradation (METHODS.md §6, robustness).

Degraded features go through the run's encoder and the content-addressed cache
(:func:`fairser.degrade.extract_degraded_features`), and are normalised with the *clean* statistics the
run's model was trained with (:func:`fairser.run.prepare.normaliser`), as a deployed model would be.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fairser.config import BenchmarkConfig
from fairser.run.prepare import PreparedData, normaliser

__all__ = ["augment_train", "babble_pool", "degraded_features", "run_conditions"]


def babble_pool(prepared: PreparedData, *, size: int, seed: int) -> list:
    """Up to ``size`` training-split files (seeded choice): babble talkers are never test speakers."""
    train = np.flatnonzero((prepared.manifest["split"] == "train").to_numpy())
    if len(train) == 0:  # a cross-validated benchmark's manifest has no split: every row trains somewhere
        train = np.arange(len(prepared.manifest))
    rng = np.random.default_rng([int(seed), 0xBABB1E])
    chosen = np.sort(rng.choice(train, size=min(size, len(train)), replace=False))
    return [prepared.paths[i] for i in chosen]


def run_conditions(
    specs, prepared: PreparedData, config: BenchmarkConfig, *, seed: int, pool_size: int, where: str
):
    """``(label, condition)`` of each spec, babble built from :func:`babble_pool`."""
    from fairser.degrade import build_conditions
    from fairser.features import FeatureCache

    needs_pool = any(s.name == "noise" and s.params.get("kind") == "babble" for s in specs)
    pool = babble_pool(prepared, size=pool_size, seed=seed) if needs_pool else []
    return build_conditions(
        specs, babble_pool=pool, cache=FeatureCache(config.features.cache_dir), where=where
    )


def degraded_features(
    prepared: PreparedData,
    config: BenchmarkConfig,
    *,
    condition: Any,
    rows: np.ndarray,
    seed: int,
    progress: bool = False,
    n_jobs: int | None = None,
    description: str | None = None,
):
    """Normalised degraded audio features of manifest ``rows`` and the extraction result (with ``ok``,
    the measures and the cache counts)."""
    from fairser.degrade import extract_degraded_features
    from fairser.features import FeatureCache, build_audio_encoder

    rows = np.asarray(rows, dtype=np.int64)
    res = extract_degraded_features(
        paths=[prepared.paths[i] for i in rows],
        condition=condition,
        encoder=build_audio_encoder(config.features.audio, **config.features.audio_options),
        cache=FeatureCache(config.features.cache_dir),
        seed=seed,
        n_jobs=n_jobs or config.features.n_jobs,
        progress=progress,
        description=description,
    )
    normalise = normaliser(prepared, config)
    return normalise(np.nan_to_num(res.features), rows), res


def augment_train(
    prepared: PreparedData, config: BenchmarkConfig, *, train, meta, run_seed: int, progress: bool = False
) -> dict[str, Any]:
    """``degrade_augment``: replace the (normalised) audio features of a seeded fraction of the training
    utterances by those of a degraded copy, each with a condition drawn uniformly (in place, on ``train``).

    The draw depends on the run's seed and ``degrade_augment.seed``; an utterance that appears once per
    modality (joint setting) is degraded alike in both. A file whose degradation fails keeps its clean
    features (counted). Returns the record for the results row.
    """
    aug = config.degrade_augment
    conditions = run_conditions(
        aug.conditions,
        prepared,
        config,
        seed=aug.seed,
        pool_size=aug.babble_pool,
        where="degrade_augment.conditions",
    )
    manifest_rows = meta["row"].to_numpy()
    unique = np.unique(manifest_rows)
    rng = np.random.default_rng([int(aug.seed), int(run_seed), 0xA06])
    n_pick = int(round(aug.fraction * unique.size))
    picked = np.sort(rng.choice(unique, size=n_pick, replace=False))
    which = rng.integers(0, len(conditions), size=n_pick)
    audio = np.array(train.audio, copy=True)
    counts: dict[str, int] = {}
    n_failed = 0
    for c, (label, condition) in enumerate(conditions):
        rows = picked[which == c]
        if rows.size == 0:
            continue
        feats, res = degraded_features(prepared, config, condition=condition, rows=rows, seed=aug.seed,
                                       progress=progress, n_jobs=1)  # fmt: skip
        for r, vec, ok in zip(rows, feats, res.ok, strict=True):
            if ok:
                audio[manifest_rows == r] = vec
        counts[label] = int(res.ok.sum())
        n_failed += int((~res.ok).sum())
    train.audio = audio
    return {
        "fraction": aug.fraction,
        "seed": aug.seed,
        "n_utterances": int(unique.size),
        "n_degraded": int(sum(counts.values())),
        "n_failed": n_failed,
        "per_condition": counts,
    }
