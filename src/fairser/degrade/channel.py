"""Channel conditions: band-limiting (a zero-phase Butterworth filter) and resampling down and back up."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import scipy
from scipy import signal as sps

from fairser.degrade.base import resample

__all__ = ["BandLimit", "Resample", "band_filter"]


@lru_cache(maxsize=32)
def _butter_sos(order: int, low_hz: float | None, high_hz: float | None, sample_rate: int) -> np.ndarray:
    """The filter's second-order sections, designed once per setting (read-only: shared between calls)."""
    if low_hz is not None and high_hz is not None:
        sos = sps.butter(order, [low_hz, high_hz], btype="bandpass", fs=sample_rate, output="sos")
    elif low_hz is not None:
        sos = sps.butter(order, low_hz, btype="highpass", fs=sample_rate, output="sos")
    else:
        sos = sps.butter(order, high_hz, btype="lowpass", fs=sample_rate, output="sos")
    sos.setflags(write=False)
    return sos


def band_filter(
    x: np.ndarray, *, sample_rate: int, low_hz: float | None, high_hz: float | None, order: int
) -> np.ndarray:
    """``x`` through a zero-phase (forward-backward) Butterworth band-, high- or low-pass filter."""
    nyquist = sample_rate / 2
    if high_hz is not None and high_hz >= nyquist:
        high_hz = None
    if low_hz is None and high_hz is None:
        return np.asarray(x, dtype=np.float32)
    sos = _butter_sos(order, low_hz, high_hz, sample_rate).copy()  # scipy wants a writable buffer
    if x.size <= 3 * (2 * sos.shape[0] + 1):
        return np.asarray(x, dtype=np.float32)  # too short to filter forward-backward
    return sps.sosfiltfilt(sos, np.asarray(x, dtype=np.float64)).astype(np.float32)


@dataclass(frozen=True, kw_only=True)
class BandLimit:
    """Keep ``low_hz``..``high_hz`` (either may be omitted: a high- or low-pass) with a Butterworth filter."""

    low_hz: float | None = None
    high_hz: float | None = 4000.0
    order: int = 8
    name: ClassVar[str] = "bandlimit"

    def __post_init__(self) -> None:
        if self.low_hz is None and self.high_hz is None:
            raise ValueError("bandlimit: give low_hz, high_hz or both")
        if (self.low_hz is not None and self.low_hz <= 0) or (self.high_hz is not None and self.high_hz <= 0):
            raise ValueError("bandlimit: cut-offs must be positive (Hz)")
        if self.low_hz is not None and self.high_hz is not None and self.low_hz >= self.high_hz:
            raise ValueError(f"bandlimit: low_hz={self.low_hz} must be below high_hz={self.high_hz}")
        if not 1 <= self.order <= 16:
            raise ValueError(f"bandlimit: order={self.order} must lie in 1..16")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "low_hz": self.low_hz, "high_hz": self.high_hz, "order": self.order,
                "scipy": scipy.__version__}  # fmt: skip

    def label(self) -> str:
        return f"band {self.low_hz or 0:g}-{self.high_hz or 'nyq'}"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        return band_filter(signal, sample_rate=sample_rate, low_hz=self.low_hz, high_hz=self.high_hz,
                           order=self.order), {}  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Resample:
    """Resample to ``rate`` Hz and back (soxr HQ): everything above ``rate / 2`` is lost."""

    rate: int = 8000
    name: ClassVar[str] = "resample"

    def __post_init__(self) -> None:
        if self.rate < 1000:
            raise ValueError(f"resample: rate={self.rate} Hz is below 1000")

    def config(self) -> dict[str, Any]:
        import soxr

        return {"name": self.name, "rate": int(self.rate), "soxr": soxr.__version__}

    def label(self) -> str:
        return f"resample {self.rate / 1000:g}kHz"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        y = resample(resample(signal, sample_rate, self.rate), self.rate, sample_rate)
        y = y[: signal.size] if y.size >= signal.size else np.pad(y, (0, signal.size - y.size))
        return np.ascontiguousarray(y, dtype=np.float32), {}
