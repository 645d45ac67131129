"""Raw-audio rows of one split, as the backbone training loop reads them (DESIGN.md: the speech-LLM path).

Unlike :class:`fairser.train.ArrayDataset` (cached embeddings), an :class:`AudioDataset` holds waveforms or
audio paths, read with :func:`fairser.features.load_audio` when a batch needs them, plus each row's
duration (for length bucketing), label, domain, gender, transcript and modality.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairser.grouping import group_index

__all__ = ["AudioDataset"]

_MODALITIES = ("audio", "audio+text")


@dataclass(kw_only=True)
class AudioDataset:
    """Raw-audio rows of one split, aligned row by row.

    Attributes
    ----------
    audio : sequence of 1-D float arrays or paths
        Mono waveforms at ``sample_rate``, or audio files (read and resampled on use).
    y : int array (N,)
        Class index of each row.
    domain : int array (N,)
        Domain id (language, or language x modality in the joint setting).
    sensitive : int array (N,)
        Sensitive-value id (``0 .. n_values - 1``, the run's :class:`~fairser.grouping.Grouper` order), -1 unknown.
    texts : sequence of str or None, optional
        Transcripts; used only where ``modalities`` is ``audio+text``.
    modalities : sequence of str, optional
        ``audio`` or ``audio+text`` per row (default: ``audio`` everywhere).
    languages : sequence of str, optional
        Language code per row (audio LLMs pick each prompt's instruction language with it).
    durations : float array (N,), optional
        Clip durations in seconds, for length bucketing; by default the waveform length, or the file
        header's (``soundfile.info``, which also checks that every file exists before training starts).
    sample_rate : int
        Rate of the waveforms, and the rate files are resampled to.
    cache_audio : bool
        Keep waveforms read from files in memory (small corpora: each file is decoded once).
    n_values : int
        Number of values of the sensitive attribute.
    """

    audio: Sequence[np.ndarray | str | os.PathLike]
    y: np.ndarray
    domain: np.ndarray
    sensitive: np.ndarray
    texts: Sequence[str | None] | None = None
    modalities: Sequence[str] | None = None
    languages: Sequence[str] | None = None
    durations: np.ndarray | None = None
    sample_rate: int = 16000
    cache_audio: bool = False
    n_values: int = 2
    _cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.audio)
        self.y = np.asarray(self.y, dtype=np.int64)
        self.domain = np.asarray(self.domain, dtype=np.int64)
        self.sensitive = np.asarray(self.sensitive, dtype=np.int64)
        for name in ("y", "domain", "sensitive", "texts", "modalities", "languages", "durations"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"AudioDataset.{name} has {len(v)} rows, audio has {n}")
        bad = (self.sensitive < -1) | (self.sensitive >= self.n_values)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"AudioDataset.sensitive must be a value id in [0, {self.n_values}) or -1; found "
                f"{self.sensitive[row]} at row {row}"
            )
        if n and (self.domain.min() < 0 or self.y.min() < 0):
            raise ValueError("AudioDataset: domain and y must be >= 0")
        if self.modalities is None:
            self.modalities = ["audio"] * n
        for i, m in enumerate(self.modalities):
            if m not in _MODALITIES:
                raise ValueError(f"AudioDataset.modalities[{i}] must be one of {_MODALITIES}, got {m!r}")
            if m == "audio+text" and (self.texts is None or not str(self.texts[i] or "").strip()):
                raise ValueError(f"AudioDataset row {i}: modality 'audio+text' but no transcript")
        if self.durations is None:
            self.durations = np.array([self._duration(a) for a in self.audio], dtype=np.float64)
        self.durations = np.asarray(self.durations, dtype=np.float64)

    def _duration(self, a) -> float:
        if isinstance(a, str | os.PathLike):
            import soundfile as sf

            from fairser.features.audio import AudioError

            try:
                return float(sf.info(str(a)).duration)
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                raise AudioError(Path(a), f"cannot read the audio header: {exc}") from exc
        return float(np.asarray(a).shape[-1]) / self.sample_rate

    def __len__(self) -> int:
        return len(self.audio)

    @property
    def group(self) -> np.ndarray:
        """Group id ``n_values * domain + sensitive`` (-1 for an unknown value), as :attr:`GroupBatch.group`."""
        return group_index(self.domain, self.sensitive, self.n_values)

    def waveforms(self, idx: Sequence[int]) -> list[np.ndarray]:
        """Waveforms of rows ``idx`` (files are decoded with :func:`fairser.features.load_audio`)."""
        from fairser.features.audio import load_audio

        out = []
        for i in idx:
            i = int(i)
            a = self.audio[i]
            if not isinstance(a, str | os.PathLike):
                out.append(np.asarray(a, dtype=np.float32))
                continue
            wave = self._cache.get(i)
            if wave is None:
                wave = load_audio(a, sample_rate=self.sample_rate)
                if self.cache_audio:
                    self._cache[i] = wave
            out.append(wave)
        return out

    def batch_inputs(self, idx: Sequence[int]) -> dict:
        """``audios``, ``texts`` (None where the row is audio-only), ``modalities`` and (when known)
        ``languages`` of rows ``idx``."""
        modalities = [self.modalities[int(i)] for i in idx]
        texts = [
            str(self.texts[int(i)]) if m == "audio+text" else None
            for i, m in zip(idx, modalities, strict=True)
        ]
        out = {"audios": self.waveforms(idx), "texts": texts, "modalities": modalities}
        if self.languages is not None:
            out["languages"] = [self.languages[int(i)] for i in idx]
        return out
