"""Features of degraded audio, cached like any feature: decode, degrade (seeded per file), encode.

The cache key of a degraded feature is the source file's content hash x a fingerprint of the encoder's
config, the condition's config and the seed, so a warm re-run extracts nothing and two conditions (or two
bitrates, or two seeds) never share an entry. What the condition measured (:data:`~fairser.degrade.base.MEASURES`)
is cached beside the features under its own fingerprint. Uncached files go to a process pool (or run in
this process for ``n_jobs=1``); each worker writes its entries itself, so finished files survive an
interruption.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairser.degrade.base import MEASURES, Condition, file_rng, measures_vector
from fairser.features.audio import AudioError, load_audio
from fairser.features.base import AudioEncoder, config_fingerprint
from fairser.features.cache import FeatureCache
from fairser.lifeline import die_with_parent
from fairser.progress import progress_bar

__all__ = [
    "DegradedBatch",
    "DegradedFeatures",
    "degrade_file",
    "degraded_fingerprints",
    "extract_degraded_features",
]


@dataclass(frozen=True, kw_only=True)
class DegradedBatch:
    """What degrading a list of files gave, row-aligned with ``paths``: the measures, which files worked
    (``ok``), the failures named, and how many were made now (``n_extracted``) or found in the cache."""

    paths: tuple[Path, ...]
    measures: np.ndarray  # (N, len(MEASURES)) float32
    ok: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)
    n_extracted: int = 0
    n_cached: int = 0
    fingerprint: str = ""

    def measure(self, name: str) -> np.ndarray:
        """One measure per file (NaN where it does not apply or the file failed)."""
        return self.measures[:, MEASURES.index(name)]


@dataclass(frozen=True, kw_only=True)
class DegradedFeatures(DegradedBatch):
    """Features of degraded files, row-aligned with ``paths`` (failed rows: NaN, ``ok`` False)."""

    features: np.ndarray


def degraded_fingerprints(*, encoder: AudioEncoder, condition: Condition, seed: int) -> tuple[str, str]:
    """(features fingerprint, measures fingerprint) of ``condition`` under ``seed`` with ``encoder``."""
    cond = condition.config()
    return (
        config_fingerprint({"encoder": encoder.config(), "condition": cond, "seed": int(seed)}),
        config_fingerprint({"measures": list(MEASURES), "condition": cond, "seed": int(seed)}),
    )


def degrade_file(
    path: str | os.PathLike, *, condition: Condition, seed: int, content_hash: str, sample_rate: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Decode ``path`` at ``sample_rate`` and degrade it with the file's own generator."""
    signal = load_audio(path, sample_rate=sample_rate)
    return condition.apply(
        signal, sample_rate=sample_rate, rng=file_rng(seed=seed, content_hash=content_hash)
    )


_W: dict[str, object] = {}


def _init(condition, encoder, cache, fps, seed) -> None:
    _W.update(condition=condition, encoder=encoder, cache=cache, fps=fps, seed=seed)
    getattr(encoder, "smile", None)  # build heavy state once per worker


def _one(task: tuple[str, str]):
    content_hash, path = task
    encoder, cache = _W["encoder"], _W["cache"]
    fp, mfp = _W["fps"]
    try:
        y, measures = degrade_file(
            path, condition=_W["condition"], seed=_W["seed"], content_hash=content_hash,
            sample_rate=encoder.sample_rate,
        )  # fmt: skip
        vector = np.asarray(
            encoder.encode_signal(y, sample_rate=encoder.sample_rate), dtype=np.float32
        ).ravel()
    except AudioError as exc:
        return content_hash, None, None, exc.reason
    except Exception as exc:  # one file's failure must not lose the others
        return content_hash, None, None, f"{type(exc).__name__}: {exc}"
    if not np.isfinite(vector).all():
        return content_hash, None, None, "encoder returned non-finite values on the degraded signal"
    mvec = measures_vector(measures)
    cache.put(vector, fingerprint=fp, content_hash=content_hash)
    cache.put(mvec, fingerprint=mfp, content_hash=content_hash)
    return content_hash, vector, mvec, None


def rows_by_content(
    cache: FeatureCache, paths: Sequence[Path]
) -> tuple[dict[str, list[int]], dict[int, str]]:
    """The rows of ``paths`` per content hash (a file degrades once, whatever its copies), and the rows whose
    file cannot be read with the reason."""
    rows_by_hash: dict[str, list[int]] = {}
    reasons: dict[int, str] = {}
    for i, digest in enumerate(cache.file_hashes(paths)):
        if isinstance(digest, OSError):
            reasons[i] = f"cannot read: {digest}"
        else:
            rows_by_hash.setdefault(digest, []).append(i)
    return rows_by_hash, reasons


def _tied_init(parent: int, initializer, *initargs) -> None:
    """A pool worker that exits when the extracting process dies (:func:`fairser.lifeline.die_with_parent`)."""
    die_with_parent(parent=parent)
    initializer(*initargs)


def run_tasks(
    tasks: list, *, worker, initializer, initargs: tuple, n_jobs: int, progress: bool, description: str
) -> Iterator:
    """``worker(task)`` for every task, in a pool of ``n_jobs`` processes (each set up once with
    ``initializer(*initargs)`` and tied to this process's life) or in this process, in completion order, with a progress bar."""
    with ExitStack() as stack:
        if n_jobs > 1 and len(tasks) > 1:
            pool = stack.enter_context(
                multiprocessing.get_context().Pool(
                    min(n_jobs, len(tasks)),
                    initializer=_tied_init,
                    initargs=(os.getpid(), initializer, *initargs),
                )
            )
            results = pool.imap_unordered(
                worker, tasks, chunksize=max(1, min(16, len(tasks) // (8 * n_jobs)))
            )
        else:
            initializer(*initargs)
            results = map(worker, tasks)
        bar = stack.enter_context(progress_bar(enabled=progress))
        task = bar.add_task(description, total=len(tasks))
        for result in results:
            yield result
            bar.advance(task)


def extract_degraded_features(
    *,
    paths: Sequence[str | os.PathLike],
    condition: Condition,
    encoder: AudioEncoder,
    cache: FeatureCache,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
    description: str | None = None,
) -> DegradedFeatures:
    """Encode every file of ``paths`` after ``condition``, computing only what ``cache`` lacks.

    A file that cannot be read or degraded gets a NaN row, ``ok=False`` and its reason in ``failures``.
    """
    path_list = tuple(Path(p) for p in paths)
    n, dim = len(path_list), encoder.dim
    fp, mfp = degraded_fingerprints(encoder=encoder, condition=condition, seed=seed)
    features = np.full((n, dim), np.nan, dtype=np.float32)
    measures = np.full((n, len(MEASURES)), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    rows_by_hash, reasons = rows_by_content(cache, path_list)
    tasks, n_cached = [], 0
    for digest, rows in rows_by_hash.items():
        vector = cache.get(fingerprint=fp, content_hash=digest, dim=dim)
        mvec = cache.get(fingerprint=mfp, content_hash=digest, dim=len(MEASURES), allow_nan=True)
        if vector is None or mvec is None:
            tasks.append((digest, str(path_list[rows[0]])))
        else:
            features[rows], measures[rows], ok[rows] = vector, mvec, True
            n_cached += len(rows)
    n_extracted = 0
    if tasks:
        cache.record_encoder(
            fingerprint=fp,
            config={"encoder": encoder.config(), "condition": condition.config(), "seed": seed},
        )
        results = run_tasks(tasks, worker=_one, initializer=_init, initargs=(condition, encoder, cache, (fp, mfp), seed),
                            n_jobs=n_jobs, progress=progress, description=description or f"{condition.label()} features")  # fmt: skip
        for digest, vector, mvec, reason in results:
            rows = rows_by_hash[digest]
            if reason is None:
                features[rows], measures[rows], ok[rows] = vector, mvec, True
                n_extracted += len(rows)
            else:
                for i in rows:
                    reasons[i] = reason
    return DegradedFeatures(
        paths=path_list,
        features=features,
        measures=measures,
        ok=ok,
        failures=[(path_list[i], reasons[i]) for i in sorted(reasons)],
        n_extracted=n_extracted,
        n_cached=n_cached,
        fingerprint=fp,
    )
