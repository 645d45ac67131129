"""Additive noise at a set signal-to-noise ratio: white, pink (1/f power) and babble (a mix of other
utterances of the corpus). All randomness comes from the caller's generator (seeded per file).

The SNR is global: the speech power is the mean square of the whole utterance, and the noise is scaled to
``P_speech / 10^(snr_db / 10)``. The SNR recorded is measured again on the noise actually added.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from fairser.features.audio import DEFAULT_SAMPLE_RATE, load_audio

__all__ = ["Noise", "pink_noise"]

_KINDS = ("white", "pink", "babble")
_POOL: dict[tuple[str, ...], list[np.ndarray]] = {}  # babble sources, loaded once per process


def pink_noise(n: int, *, rng: np.random.Generator) -> np.ndarray:
    """Pink (1/f power spectrum) noise: white Gaussian noise shaped by 1/sqrt(f) in the frequency domain."""
    if n == 0:
        return np.zeros(0, dtype=np.float32)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spectrum.size, dtype=float)
    f[0] = 1.0  # keep the DC bin finite (it is then removed)
    spectrum /= np.sqrt(f)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class Noise:
    """Additive ``kind`` noise at ``snr_db``.

    ``babble`` mixes ``n_talkers`` utterances drawn (per file, seeded) from ``pool``: audio files of the
    corpus, e.g. the training split's, so test speakers never babble over themselves. Each talker is scaled
    to unit RMS, started at a random offset and looped to the utterance's length. ``pool_sha256`` (the
    sha256 of the pool files' content hashes) keys the cache; :func:`fairser.degrade.with_babble_pool` sets
    both.
    """

    kind: Literal["white", "pink", "babble"] = "white"
    snr_db: float = 10.0
    n_talkers: int = 4
    pool: tuple[str, ...] = field(default=(), repr=False)
    pool_sha256: str = ""
    name: ClassVar[str] = "noise"

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"noise: kind={self.kind!r} must be one of {list(_KINDS)}")
        if not -30.0 <= self.snr_db <= 60.0:
            raise ValueError(f"noise: snr_db={self.snr_db} must lie in -30..60 dB")
        if self.kind == "babble" and not 1 <= self.n_talkers <= 32:
            raise ValueError(f"noise: n_talkers={self.n_talkers} must lie in 1..32")

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "snr_db": float(self.snr_db)}
        if self.kind == "babble":
            out.update(n_talkers=self.n_talkers, pool_sha256=self.pool_sha256, pool_size=len(self.pool))
        return out

    def label(self) -> str:
        return f"{self.kind} noise {self.snr_db:g}dB"

    def with_pool(self, paths: Sequence[str | os.PathLike], *, content_hashes: Sequence[str]) -> Noise:
        """This condition with its babble pool (a no-op for white and pink noise)."""
        if self.kind != "babble":
            return self
        if len(paths) < self.n_talkers:
            raise ValueError(
                f"noise: babble needs at least n_talkers={self.n_talkers} pool files, got {len(paths)}"
            )
        digest = hashlib.sha256("\n".join(sorted(content_hashes)).encode()).hexdigest()
        return Noise(kind=self.kind, snr_db=self.snr_db, n_talkers=self.n_talkers,
                     pool=tuple(str(p) for p in paths), pool_sha256=digest)  # fmt: skip

    def _pool_signals(self) -> list[np.ndarray]:
        if not self.pool:
            raise ValueError("noise: babble has no pool of utterances; build it with with_pool(...)")
        if self.pool not in _POOL:
            _POOL.clear()
            _POOL[self.pool] = [load_audio(p, sample_rate=DEFAULT_SAMPLE_RATE) for p in self.pool]
        return _POOL[self.pool]

    def _babble(self, n: int, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
        if sample_rate != DEFAULT_SAMPLE_RATE:
            raise ValueError(f"noise: babble is built at {DEFAULT_SAMPLE_RATE} Hz, got {sample_rate}")
        pool = self._pool_signals()
        out = np.zeros(n, dtype=np.float64)
        for i in rng.choice(len(pool), size=self.n_talkers, replace=False):
            talker = pool[int(i)].astype(np.float64)
            rms = np.sqrt(np.mean(talker**2))
            if rms == 0:
                continue
            start = int(rng.integers(talker.size))
            out += np.resize(np.roll(talker, -start), n) / rms
        return out.astype(np.float32)

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        x = np.asarray(signal, dtype=np.float32)
        n = x.size
        if self.kind == "white":
            noise = rng.standard_normal(n).astype(np.float32)
        elif self.kind == "pink":
            noise = pink_noise(n, rng=rng)
        else:
            noise = self._babble(n, sample_rate=sample_rate, rng=rng)
        p_speech = float(np.mean(x.astype(np.float64) ** 2))
        p_noise = float(np.mean(noise.astype(np.float64) ** 2))
        if p_speech == 0.0 or p_noise == 0.0:  # silence (or no noise): nothing to scale against
            return x.copy(), {"snr_db": float("nan")}
        added = (noise * np.sqrt(p_speech / (p_noise * 10.0 ** (self.snr_db / 10.0)))).astype(np.float32)
        measured = 10.0 * np.log10(p_speech / float(np.mean(added.astype(np.float64) ** 2)))
        return x + added, {"snr_db": float(measured)}
