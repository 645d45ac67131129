"""The narrow-band telephone channel: 300-3400 Hz, 8 kHz, G.711 companding (ITU-T G.711; μ-law in North
America and Japan, A-law elsewhere), or GSM 06.10 for a mobile call. Companding through libsndfile."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import soundfile as sf

from fairser.degrade.base import align, resample
from fairser.degrade.channel import band_filter
from fairser.degrade.codecs import libsndfile_roundtrip

__all__ = ["Telephone"]

_SUBTYPES = {"mulaw": "ULAW", "alaw": "ALAW", "gsm": "GSM610"}


@dataclass(frozen=True, kw_only=True)
class Telephone:
    """Band-pass ``low_hz``..``high_hz`` (Butterworth, order 4), 8 kHz, then ``codec`` (default μ-law)."""

    codec: Literal["mulaw", "alaw", "gsm"] = "mulaw"
    low_hz: float = 300.0
    high_hz: float = 3400.0
    name: ClassVar[str] = "telephone"

    def __post_init__(self) -> None:
        if self.codec not in _SUBTYPES:
            raise ValueError(f"telephone: codec={self.codec!r} must be one of {sorted(_SUBTYPES)}")
        if not 0 < self.low_hz < self.high_hz < 4000:
            raise ValueError(
                f"telephone: need 0 < low_hz < high_hz < 4000 Hz, got {self.low_hz}, {self.high_hz}"
            )

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "codec": self.codec, "low_hz": self.low_hz, "high_hz": self.high_hz,
                "order": 4, "rate": 8000, "libsndfile": sf.__libsndfile_version__}  # fmt: skip

    def label(self) -> str:
        return f"telephone {self.codec}"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        x = resample(band_filter(signal, sample_rate=sample_rate, low_hz=self.low_hz, high_hz=self.high_hz,
                                 order=4), sample_rate, 8000)  # fmt: skip
        peak = float(np.abs(x).max()) if x.size else 0.0
        if peak > 1.0:  # companding saturates at full scale
            x = x / peak
        y, payload = libsndfile_roundtrip(x, rate=8000, format="WAV", subtype=_SUBTYPES[self.codec])
        if peak > 1.0:
            y = y * peak
        y, _ = align(resample(y, 8000, sample_rate), signal, max_lag=0)
        return y, {"bitrate_kbps": 8.0 * payload / (signal.size / sample_rate) / 1000.0}
