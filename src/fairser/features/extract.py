"""Cached, parallel feature extraction for a list of audio files or transcripts.

Only what the cache lacks is computed. Audio goes to a process pool: each worker receives the encoder once
(building its own openSMILE instance once), takes files in chunks, decodes each file once, encodes it and
writes the entry to the cache itself, so every finished file is on disk even if the run is interrupted or
stops at an error.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from fairser.features.audio import AudioError, load_audio
from fairser.features.base import AudioEncoder, TextEncoder
from fairser.features.cache import FeatureCache, sha256_text
from fairser.lifeline import die_with_parent

__all__ = ["AudioFeatures", "extract_audio_features", "extract_text_features"]

_TEXT_BATCH = 256


@dataclass(frozen=True)
class AudioFeatures:
    """Features of a list of audio files, row-aligned with ``paths``.

    Attributes
    ----------
    paths : tuple of Path
        The inputs, in order.
    features : ndarray (N, D) float32
        One row per path; rows of failed files are all NaN (never zeros).
    ok : ndarray (N,) bool
        False where extraction failed.
    failures : list of (Path, str)
        Each failed path with the reason.
    n_extracted : int
        Paths whose features were computed in this call.
    n_cached : int
        Paths served from the cache. ``n_extracted + n_cached + len(failures) == N``.
    fingerprint : str
        The encoder fingerprint the features belong to.
    n_cache_nonfinite : int
        Cache entries found holding NaN/inf: ignored and recomputed (:attr:`FeatureCache.nonfinite`).
    """

    paths: tuple[Path, ...]
    features: np.ndarray
    ok: np.ndarray
    failures: list[tuple[Path, str]] = field(default_factory=list)
    n_extracted: int = 0
    n_cached: int = 0
    fingerprint: str = ""
    n_cache_nonfinite: int = 0


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


# -- worker side ------------------------------------------------------------------------------------------
_worker_encoder: AudioEncoder | None = None
_worker_cache: FeatureCache | None = None
_worker_fingerprint = ""


#: Peak amplitude below which a file is digital silence (under one step of 16-bit PCM): no features are
#: extracted from it; it is skipped and counted like an unreadable file (a silent file carries no emotion).
DIGITAL_SILENCE = 2.0**-15


def _init_worker(encoder: AudioEncoder, cache: FeatureCache, fingerprint: str) -> None:
    global _worker_encoder, _worker_cache, _worker_fingerprint
    _worker_encoder, _worker_cache, _worker_fingerprint = encoder, cache, fingerprint
    # Build heavy state (the openSMILE instance) now, once per worker, not inside the first task.
    getattr(encoder, "smile", None)


def _init_pool_worker(parent: int, encoder: AudioEncoder, cache: FeatureCache, fingerprint: str) -> None:
    """A pool worker: exits when the extracting process dies (:func:`fairser.lifeline.die_with_parent`)."""
    die_with_parent(parent=parent)
    _init_worker(encoder, cache, fingerprint)


def _extract_one(task: tuple[str, str]) -> tuple[str, np.ndarray | None, str | None]:
    """Decode, encode and cache one file; returns (content hash, vector or None, failure reason or None)."""
    content_hash, path = task
    encoder, cache = _worker_encoder, _worker_cache
    assert encoder is not None and cache is not None, "worker not initialised"
    try:
        signal = load_audio(path, sample_rate=encoder.sample_rate)
        if signal.size and float(np.max(np.abs(signal))) < DIGITAL_SILENCE:
            return content_hash, None, "digital silence (peak amplitude below one 16-bit step)"
        vector = encoder.encode_signal(signal, sample_rate=encoder.sample_rate)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
    except AudioError as exc:
        return content_hash, None, exc.reason
    except Exception as exc:  # an encoder error on one file must not lose the others
        return content_hash, None, f"encoder failed: {type(exc).__name__}: {exc}"
    n_bad = int(np.count_nonzero(~np.isfinite(vector)))
    if n_bad:
        return content_hash, None, f"encoder returned {n_bad} non-finite values (signal too short?)"
    cache.put(vector, fingerprint=_worker_fingerprint, content_hash=content_hash)
    return content_hash, vector, None


def _results(
    tasks: list[tuple[str, str]],
    *,
    encoder: AudioEncoder,
    cache: FeatureCache,
    fingerprint: str,
    n_jobs: int,
    stack: ExitStack,
) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
    """Results as they finish: in-process for one job or one task, else from a process pool.

    The pool is entered into ``stack``, so leaving it (normally, on an error or on ``on_error="raise"``)
    terminates the workers; every file they finished is already in the cache by then.
    """
    if n_jobs == 1 or len(tasks) == 1:
        _init_worker(encoder, cache, fingerprint)
        return map(_extract_one, tasks)
    n_workers = min(n_jobs, len(tasks))
    # Chunks amortise inter-process overhead; several chunks per worker keep the tail balanced.
    chunksize = max(1, min(16, -(-len(tasks) // (n_workers * 8))))
    pool = stack.enter_context(
        multiprocessing.get_context().Pool(
            n_workers, initializer=_init_pool_worker, initargs=(os.getpid(), encoder, cache, fingerprint)
        )
    )
    return pool.imap_unordered(_extract_one, tasks, chunksize=chunksize)


def extract_audio_features(
    *,
    paths: Sequence[str | os.PathLike],
    encoder: AudioEncoder,
    cache: FeatureCache,
    n_jobs: int = 2,
    on_error: Literal["skip", "raise"] = "skip",
    progress: bool = True,
) -> AudioFeatures:
    """Encode audio files, computing only what ``cache`` lacks.

    Parameters
    ----------
    paths : sequence of path
        Audio files (any format :func:`~fairser.features.audio.load_audio` reads).
    encoder : AudioEncoder
        E.g. ``build_audio_encoder("egemaps")``.
    cache : FeatureCache
        Entries are keyed by sha256(file bytes) x ``encoder.fingerprint()``; files with identical bytes
        are decoded once.
    n_jobs : int
        Worker processes for the uncached files (1 = in this process).
    on_error : {"skip", "raise"}
        ``"skip"``: a failed file gets a NaN row, ``ok=False`` and a reason in ``failures``.
        ``"raise"``: raise :class:`AudioError` naming the first failed file; files finished before that
        are already in the cache.
    progress : bool
        Show a rich progress bar while extracting.

    Returns
    -------
    AudioFeatures
    """
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, got {n_jobs!r}")
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a sequence of paths, not a single path")
    path_list = tuple(Path(p) for p in paths)
    n = len(path_list)
    fingerprint = encoder.fingerprint()
    dim = encoder.dim
    features = np.full((n, dim), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    reasons: dict[int, str] = {}

    # 1. content hashes (memoised), then cache look-ups; group rows by content so duplicates run once.
    rows_by_hash: dict[str, list[int]] = {}
    for i, digest in enumerate(cache.file_hashes(path_list)):
        if isinstance(digest, OSError):
            reason = "file not found" if isinstance(digest, FileNotFoundError) else f"cannot read: {digest}"
            if on_error == "raise":
                raise AudioError(path_list[i], reason)
            reasons[i] = reason
        else:
            rows_by_hash.setdefault(digest, []).append(i)
    n_cached = 0
    n_nonfinite_before = len(cache.nonfinite)
    tasks: list[tuple[str, str]] = []
    for digest, rows in rows_by_hash.items():
        vector = cache.get(fingerprint=fingerprint, content_hash=digest, dim=dim)
        if vector is None:
            tasks.append((digest, str(path_list[rows[0]])))
        else:
            features[rows] = vector
            ok[rows] = True
            n_cached += len(rows)

    # 2. extract the rest.
    n_extracted = 0
    if tasks:
        cache.record_encoder(fingerprint=fingerprint, config=encoder.config())
        bar = _progress(progress)
        with ExitStack() as stack:
            # The pool starts (forks) before the progress bar starts its refresh thread.
            results = _results(
                tasks, encoder=encoder, cache=cache, fingerprint=fingerprint, n_jobs=n_jobs, stack=stack
            )
            stack.enter_context(bar)
            task_id = bar.add_task(f"{encoder.name} features", total=len(tasks))
            for digest, vector, reason in results:
                rows = rows_by_hash[digest]
                if reason is None:
                    if vector.shape != (dim,):
                        reason = f"encoder returned shape {vector.shape}, expected ({dim},)"
                    else:
                        features[rows] = vector
                        ok[rows] = True
                        n_extracted += len(rows)
                if reason is not None:
                    if on_error == "raise":
                        raise AudioError(path_list[rows[0]], reason)
                    for i in rows:
                        reasons[i] = reason
                bar.advance(task_id)

    failures = [(path_list[i], reasons[i]) for i in sorted(reasons)]
    return AudioFeatures(
        paths=path_list,
        features=features,
        ok=ok,
        failures=failures,
        n_extracted=n_extracted,
        n_cached=n_cached,
        fingerprint=fingerprint,
        n_cache_nonfinite=len(cache.nonfinite) - n_nonfinite_before,
    )


def extract_text_features(
    *,
    texts: Sequence[str],
    encoder: TextEncoder,
    cache: FeatureCache,
    progress: bool = True,
) -> np.ndarray:
    """Encode transcripts, computing only what ``cache`` lacks (in batches of unique texts).

    Parameters
    ----------
    texts : sequence of str
        Transcripts; an empty string is encoded like any other (masking it is the caller's business).
    encoder : TextEncoder
        E.g. ``build_text_encoder("e5")``, or a fitted ``build_text_encoder("tfidf")``.
    cache : FeatureCache
        Entries are keyed by sha256(UTF-8 text) x ``encoder.fingerprint()``.
    progress : bool
        Show a rich progress bar while encoding.

    Returns
    -------
    ndarray (N, D) float32, row-aligned with ``texts``.
    """
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of strings, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str (use '' for no transcript)")
    fingerprint = encoder.fingerprint()
    dim = encoder.dim
    out = np.empty((len(texts), dim), dtype=np.float32)
    rows_by_hash: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        rows_by_hash.setdefault(sha256_text(text), []).append(i)
    todo: list[tuple[str, str]] = []
    for digest, rows in rows_by_hash.items():
        vector = cache.get(fingerprint=fingerprint, content_hash=digest, dim=dim)
        if vector is None:
            todo.append((digest, texts[rows[0]]))
        else:
            out[rows] = vector
    if todo:
        cache.record_encoder(fingerprint=fingerprint, config=encoder.config())
        bar = _progress(progress)
        with bar if progress else nullcontext():
            task_id = bar.add_task(f"{encoder.name} text features", total=len(todo))
            for start in range(0, len(todo), _TEXT_BATCH):
                batch = todo[start : start + _TEXT_BATCH]
                emb = np.asarray(encoder.encode([text for _, text in batch]), dtype=np.float32)
                if emb.shape != (len(batch), dim):
                    raise RuntimeError(
                        f"{encoder!r} returned shape {emb.shape}, expected ({len(batch)}, {dim})"
                    )
                if not np.isfinite(emb).all():
                    bad = [
                        text for (_, text), row in zip(batch, emb, strict=True) if not np.isfinite(row).all()
                    ]
                    raise RuntimeError(f"{encoder!r} returned non-finite values for texts such as {bad[0]!r}")
                for (digest, _), vector in zip(batch, emb, strict=True):
                    cache.put(vector, fingerprint=fingerprint, content_hash=digest)
                    out[rows_by_hash[digest]] = vector
                bar.advance(task_id, len(batch))
    return out
