"""Degraded waveforms, cached like features: what a raw-audio backbone reads under a condition.

A backbone (an SSL encoder, an audio LLM) reads the waveform itself, so its degraded input is the degraded
signal, not a feature vector. Each file is decoded at ``sample_rate``, degraded with its own generator
(:func:`~fairser.degrade.base.file_rng`: the run's seed x the file's content hash, the same rule as degraded
features) and written once as a 32-bit float WAV into the feature cache, in the cache's own layout::

    <fingerprint>/encoder.json                   the condition, seed and rate, for humans
    <fingerprint>/<hh>/<content_sha256>.wav      the degraded signal (float32, mono, ``sample_rate``)

with ``fingerprint`` the sha256 of (condition config with its library versions, seed, sample rate, format).
The float WAV holds the degraded samples exactly, and :func:`fairser.features.load_audio` reads it back
without resampling. The measures (:data:`~fairser.degrade.base.MEASURES`) are cached beside it as a vector
entry of their own fingerprint. Each file is written to a temporary name and moved into place, so an
interrupted run leaves whole files only; a warm re-run degrades nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from fairser.degrade.base import MEASURES, Condition, measures_vector
from fairser.degrade.extract import DegradedBatch, degrade_file, rows_by_content, run_tasks
from fairser.features.audio import AudioError
from fairser.features.base import config_fingerprint
from fairser.features.cache import FeatureCache

__all__ = ["DegradedAudio", "degraded_audio_fingerprints", "extract_degraded_audio"]

#: How a degraded waveform is stored (part of its fingerprint).
_FORMAT = "wav/float32/mono"


@dataclass(frozen=True, kw_only=True)
class DegradedAudio(DegradedBatch):
    """Degraded audio files, row-aligned with ``paths``: ``files[i]`` is the cached degraded copy of
    ``paths[i]`` (None where it failed, ``ok`` False), with its measures."""

    files: tuple[Path | None, ...]


def degraded_audio_fingerprints(*, condition: Condition, seed: int, sample_rate: int) -> tuple[str, str]:
    """(audio fingerprint, measures fingerprint) of ``condition`` under ``seed`` at ``sample_rate``."""
    key = {"condition": condition.config(), "seed": int(seed), "sample_rate": int(sample_rate)}
    return (
        config_fingerprint({**key, "format": _FORMAT}),
        config_fingerprint({**key, "measures": list(MEASURES)}),
    )


def _audio_path(cache: FeatureCache, *, fingerprint: str, content_hash: str) -> Path:
    return cache.entry_path(fingerprint=fingerprint, content_hash=content_hash).with_suffix(".wav")


def _readable(path: Path, *, sample_rate: int) -> bool:
    """A cached file that a crash could not have left half-written (it was moved into place whole) can
    still be damaged on disk; its header is checked before it is reused."""
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False
    return info.samplerate == sample_rate and info.channels == 1 and info.frames > 0


def _write_wav(path: Path, signal: np.ndarray, *, sample_rate: int, content_hash: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{content_hash[:16]}.", suffix=".tmp")
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(signal, dtype=np.float32), sample_rate, subtype="FLOAT", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_W: dict[str, object] = {}


def _init(condition, cache, fps, seed, sample_rate) -> None:
    _W.update(condition=condition, cache=cache, fps=fps, seed=seed, sample_rate=sample_rate)


def _one(task: tuple[str, str]):
    content_hash, path = task
    cache, (fp, mfp), rate = _W["cache"], _W["fps"], _W["sample_rate"]
    try:
        y, measures = degrade_file(
            path, condition=_W["condition"], seed=_W["seed"], content_hash=content_hash, sample_rate=rate
        )
        y = np.asarray(y, dtype=np.float32)
        if y.size == 0 or not np.isfinite(y).all():
            return content_hash, None, "the degraded signal is empty or not finite"
        mvec = measures_vector(measures)
    except AudioError as exc:
        return content_hash, None, exc.reason
    except Exception as exc:  # one file's failure must not lose the others
        return content_hash, None, f"{type(exc).__name__}: {exc}"
    _write_wav(_audio_path(cache, fingerprint=fp, content_hash=content_hash), y, sample_rate=rate,
               content_hash=content_hash)  # fmt: skip
    cache.put(mvec, fingerprint=mfp, content_hash=content_hash)
    return content_hash, mvec, None


def extract_degraded_audio(
    *,
    paths: Sequence[str | os.PathLike],
    condition: Condition,
    cache: FeatureCache,
    seed: int = 0,
    sample_rate: int = 16000,
    n_jobs: int = 1,
    progress: bool = True,
    description: str | None = None,
) -> DegradedAudio:
    """The degraded copy of every file of ``paths`` under ``condition`` (a cached float WAV at
    ``sample_rate``), degrading only what ``cache`` lacks; a file that cannot be read or degraded gets
    ``files[i] = None``, ``ok[i] = False`` and its reason in ``failures``."""
    path_list = tuple(Path(p) for p in paths)
    n = len(path_list)
    fp, mfp = degraded_audio_fingerprints(condition=condition, seed=seed, sample_rate=sample_rate)
    files: list[Path | None] = [None] * n
    measures = np.full((n, len(MEASURES)), np.nan, dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    rows_by_hash, reasons = rows_by_content(cache, path_list)

    def fill(digest: str, mvec: np.ndarray) -> None:
        out = _audio_path(cache, fingerprint=fp, content_hash=digest)
        for i in rows_by_hash[digest]:
            files[i], measures[i], ok[i] = out, mvec, True

    tasks, n_cached = [], 0
    for digest, rows in rows_by_hash.items():
        mvec = cache.get(fingerprint=mfp, content_hash=digest, dim=len(MEASURES), allow_nan=True)
        wav = _audio_path(cache, fingerprint=fp, content_hash=digest)
        if mvec is None or not _readable(wav, sample_rate=sample_rate):
            tasks.append((digest, str(path_list[rows[0]])))
        else:
            fill(digest, mvec)
            n_cached += len(rows)
    n_extracted = 0
    if tasks:
        cache.record_encoder(
            fingerprint=fp,
            config={"condition": condition.config(), "seed": int(seed), "sample_rate": int(sample_rate),
                    "format": _FORMAT, "what": "degraded waveforms (fairser.degrade.waveforms)"},
        )  # fmt: skip
        results = run_tasks(tasks, worker=_one, initializer=_init, initargs=(condition, cache, (fp, mfp), seed, sample_rate),
                            n_jobs=n_jobs, progress=progress, description=description or f"{condition.label()} audio")  # fmt: skip
        for digest, mvec, reason in results:
            if reason is None:
                fill(digest, mvec)
                n_extracted += len(rows_by_hash[digest])
            else:
                for i in rows_by_hash[digest]:
                    reasons[i] = reason
    return DegradedAudio(
        paths=path_list,
        files=tuple(files),
        measures=measures,
        ok=ok,
        failures=[(path_list[i], reasons[i]) for i in sorted(reasons)],
        n_extracted=n_extracted,
        n_cached=n_cached,
        fingerprint=fp,
    )
