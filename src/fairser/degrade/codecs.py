"""Legacy lossy codecs: encode, decode back, resample to the input rate and align (METHODS.md §6, robustness).

Two well-kept libraries, each where it is strongest:

* **FFmpeg via PyAV** (``av``; its wheels ship FFmpeg with LAME, libopus, OpenCORE AMR-NB and FFmpeg's own
  AAC encoder) for the codecs asked for *at a bitrate*: :class:`FfmpegCodec` (``mp3``, ``opus``, ``aac``,
  ``amr_nb``) sets the encoder's target bitrate directly.
* **libsndfile via soundfile** (already our decoder) for ``vorbis`` (libvorbis; VBR, steered by a quality
  setting, so the bitrate is measured, not set) and ``gsm`` (GSM 06.10 full rate, 13 kbps at 8 kHz; the
  PyAV wheel has no GSM encoder).

Every condition measures the bitrate from the encoded bytes (packet payloads for FFmpeg; the file minus
the size of an empty file, i.e. minus headers, for libsndfile) over the signal's duration.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import soundfile as sf

from fairser.degrade.base import align, resample

__all__ = ["FFMPEG_CODECS", "FfmpegCodec", "Gsm", "Vorbis", "libsndfile_roundtrip"]

#: codec -> (FFmpeg encoder, container, codec sample rate, allowed bitrates in kbps: a range or a list)
FFMPEG_CODECS: dict[str, tuple[str, str, int, tuple[float, float] | tuple[float, ...]]] = {
    "mp3": ("libmp3lame", "mp3", 16000, (8.0, 160.0)),  # MPEG-2 Layer III at 16 kHz (LAME)
    "opus": ("libopus", "ogg", 16000, (6.0, 256.0)),  # Opus (libopus), wideband
    "aac": ("aac", "adts", 16000, (8.0, 128.0)),  # AAC-LC (FFmpeg's native encoder)
    "amr_nb": (
        "libopencore_amrnb",
        "amr",
        8000,
        (4.75, 5.15, 5.9, 6.7, 7.4, 7.95, 10.2, 12.2),
    ),  # 3GPP AMR-NB
}
#: encoder options: Opus at a hard constant bitrate (its default VBR spends far less on simple signals)
_OPTIONS: dict[str, dict[str, str]] = {"opus": {"vbr": "off"}}
_MAX_LAG_S = 0.15  # codec delays (priming, filters) are far below this


def _av_version() -> str:
    import av

    return f"pyav {av.__version__}, libavcodec {'.'.join(map(str, av.library_versions['libavcodec']))}"


@dataclass(frozen=True, kw_only=True)
class FfmpegCodec:
    """A lossy codec through FFmpeg (PyAV) at a target bitrate (kbps)."""

    codec: str
    bitrate_kbps: float
    name: str = field(init=False, default="")

    def __post_init__(self) -> None:
        if self.codec not in FFMPEG_CODECS:
            raise ValueError(f"unknown FFmpeg codec {self.codec!r}; known: {sorted(FFMPEG_CODECS)}")
        allowed = FFMPEG_CODECS[self.codec][3]
        if len(allowed) == 2 and self.codec != "amr_nb":
            if not allowed[0] <= self.bitrate_kbps <= allowed[1]:
                raise ValueError(
                    f"{self.codec}: bitrate_kbps={self.bitrate_kbps} is outside {allowed[0]:g}..{allowed[1]:g}"
                )
        elif float(self.bitrate_kbps) not in allowed:
            raise ValueError(
                f"{self.codec}: bitrate_kbps must be one of {list(allowed)}, got {self.bitrate_kbps}"
            )
        object.__setattr__(self, "name", self.codec)

    def config(self) -> dict[str, Any]:
        encoder, container, rate, _ = FFMPEG_CODECS[self.codec]
        return {
            "name": self.codec,
            "bitrate_kbps": float(self.bitrate_kbps),
            "encoder": encoder,
            "container": container,
            "codec_rate": rate,
            "options": _OPTIONS.get(self.codec, {}),
            "library": _av_version(),
        }

    def label(self) -> str:
        return f"{self.codec} {self.bitrate_kbps:g}k"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        import av

        encoder, container, rate, _ = FFMPEG_CODECS[self.codec]
        x = resample(signal, sample_rate, rate)
        buf = io.BytesIO()
        payload = 0
        with av.open(buf, "w", format=container) as out:
            stream = out.add_stream(encoder, rate=rate, layout="mono", options=_OPTIONS.get(self.codec, {}))
            stream.bit_rate = int(round(self.bitrate_kbps * 1000))
            frame = av.AudioFrame.from_ndarray(x[np.newaxis, :], format="flt", layout="mono")
            frame.sample_rate, frame.pts = rate, 0
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                payload += packet.size
                out.mux(packet)
        with av.open(io.BytesIO(buf.getvalue()), "r") as inp:
            decoded_rate = inp.streams.audio[0].rate
            chunks = [f.to_ndarray().reshape(-1) for f in inp.decode(audio=0)]
        y = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
        y, _ = align(resample(y, decoded_rate, sample_rate), signal, max_lag=int(_MAX_LAG_S * sample_rate))
        return y, {"bitrate_kbps": 8.0 * payload / (signal.size / sample_rate) / 1000.0}


def libsndfile_roundtrip(
    x: np.ndarray, *, rate: int, format: str, subtype: str, compression_level: float | None = None
) -> tuple[np.ndarray, int]:
    """Encode ``x`` in memory with libsndfile and decode it; returns (decoded, payload bytes).

    The payload is the file's size minus that of the same format holding no samples (headers, Vorbis
    codebooks), so short files are not charged their headers.
    """

    def encode(samples: np.ndarray) -> bytes:
        buf = io.BytesIO()
        with sf.SoundFile(
            buf, "w", samplerate=rate, channels=1, format=format, subtype=subtype,
            compression_level=compression_level,
        ) as f:  # fmt: skip
            f.write(samples)
        return buf.getvalue()

    data = encode(np.asarray(x, dtype=np.float32))
    empty = encode(np.zeros(0, dtype=np.float32))
    y, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
    return np.asarray(y, dtype=np.float32).reshape(-1), max(len(data) - len(empty), 0)


@dataclass(frozen=True, kw_only=True)
class Vorbis:
    """Ogg Vorbis through libsndfile (libvorbis VBR) at ``quality`` in [0, 1] (0: lowest bitrate)."""

    quality: float = 0.0
    name: ClassVar[str] = "vorbis"

    def __post_init__(self) -> None:
        if not 0.0 <= self.quality <= 1.0:
            raise ValueError(f"vorbis: quality={self.quality} must lie in [0, 1]")

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "quality": float(self.quality), "libsndfile": sf.__libsndfile_version__}

    def label(self) -> str:
        return f"vorbis q{self.quality:g}"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        # libsndfile's compression level is the inverse of Vorbis quality
        y, payload = libsndfile_roundtrip(
            signal, rate=sample_rate, format="OGG", subtype="VORBIS", compression_level=1.0 - self.quality
        )
        y, _ = align(y, signal, max_lag=int(_MAX_LAG_S * sample_rate))
        return y, {"bitrate_kbps": 8.0 * payload / (signal.size / sample_rate) / 1000.0}


@dataclass(frozen=True, kw_only=True)
class Gsm:
    """GSM 06.10 full rate (13 kbps, 8 kHz) through libsndfile."""

    name: ClassVar[str] = "gsm"

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "codec_rate": 8000, "libsndfile": sf.__libsndfile_version__}

    def label(self) -> str:
        return "gsm 13k"

    def apply(
        self, signal: np.ndarray, *, sample_rate: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, dict[str, float]]:
        x = resample(signal, sample_rate, 8000)
        y, payload = libsndfile_roundtrip(x, rate=8000, format="WAV", subtype="GSM610")
        y, _ = align(resample(y, 8000, sample_rate), signal, max_lag=int(_MAX_LAG_S * sample_rate))
        return y, {"bitrate_kbps": 8.0 * payload / (signal.size / sample_rate) / 1000.0}
