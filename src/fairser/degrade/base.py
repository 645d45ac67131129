"""What every degradation condition is: a seeded, measured transformation of one mono signal.

A condition maps a signal at ``sample_rate`` Hz to a signal of the same length and rate (codecs are
decoded back, resampled and aligned), and says what it did: :data:`MEASURES` (the bitrate read from the
encoded bytes, the SNR of the noise actually added). Its ``config()`` holds everything that changes the
output (family, parameters, library versions), so the feature cache can key degraded features by it.
Randomness (noise, babble talkers) comes only from the ``rng`` the caller passes: :func:`file_rng` derives it
from the run's seed and the file's content hash, so a file degrades the same way in any order or process.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import soxr
from scipy import signal as sps

from fairser.features.base import config_fingerprint

__all__ = [
    "MEASURES",
    "Condition",
    "align",
    "condition_fingerprint",
    "file_rng",
    "measures_vector",
    "resample",
]

#: What a condition records about each file it degraded (NaN where it does not apply).
MEASURES = ("bitrate_kbps", "snr_db")


@runtime_checkable
class Condition(Protocol):
    """One degradation: ``apply`` returns the degraded signal and its :data:`MEASURES` (a dict)."""

    #: The registered family name (``mp3``, ``noise``, ...).
    name: str

    def config(self) -> dict[str, Any]: ...

    def label(self) -> str: ...

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]: ...


def condition_fingerprint(condition: Condition, *, seed: int) -> str:
    """sha256 of a condition's config and the seed: what its degraded files depend on."""
    return config_fingerprint({"condition": condition.config(), "seed": int(seed)})


def file_rng(*, seed: int, content_hash: str) -> np.random.Generator:
    """The generator of one file under one seed (independent of order and process)."""
    return np.random.default_rng([int(seed), int(content_hash[:16], 16)])


def measures_vector(measures: dict[str, float]) -> np.ndarray:
    """``measures`` as a float32 vector in :data:`MEASURES` order (NaN where absent)."""
    unknown = set(measures) - set(MEASURES)
    if unknown:
        raise ValueError(f"unknown measures {sorted(unknown)}; known: {list(MEASURES)}")
    return np.array([measures.get(k, np.nan) for k in MEASURES], dtype=np.float32)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """soxr (HQ) resampling, the loader's resampler; identity when the rates agree."""
    if rate_in == rate_out:
        return np.asarray(x, dtype=np.float32)
    return soxr.resample(np.asarray(x, dtype=np.float32), rate_in, rate_out, quality="HQ").astype(np.float32)


def align(decoded: np.ndarray, reference: np.ndarray, *, max_lag: int) -> tuple[np.ndarray, int]:
    """``decoded`` shifted to line up with ``reference`` and cut or zero-padded to its length.

    Codecs add a delay (encoder priming, filter delay) that not every container undoes; the lag in
    ``[0, max_lag]`` with the largest cross-correlation is removed. Returns the aligned signal and the lag.
    """
    decoded = np.asarray(decoded, dtype=np.float32)
    n = reference.size
    lag = 0
    if max_lag > 0 and decoded.size > 1 and np.any(reference):
        m = min(decoded.size, n + max_lag)
        corr = sps.correlate(decoded[:m], reference, mode="full", method="fft")
        # index n - 1 is lag 0; lags 0 .. max_lag: decoded[lag + t] ~ reference[t]
        window = corr[n - 1 : n - 1 + min(max_lag, m - 1) + 1]
        lag = int(np.argmax(window)) if window.size else 0
    out = decoded[lag : lag + n]
    if out.size < n:
        out = np.pad(out, (0, n - out.size))
    return np.ascontiguousarray(out, dtype=np.float32), lag
