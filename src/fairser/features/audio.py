"""Robust audio loading: any common container to a 16 kHz mono float32 signal.

Decoding goes through libsndfile (``soundfile``), which reads WAV, FLAC, OGG/Vorbis/Opus and, since
libsndfile 1.1, MP3. Resampling uses ``soxr`` (the SoX resampler, high quality setting). A file that cannot
give a usable signal raises :class:`AudioError` naming the path and the reason; no loader path ever
returns silence in place of a failure.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = ["DEFAULT_SAMPLE_RATE", "RESAMPLER", "AudioError", "load_audio"]

DEFAULT_SAMPLE_RATE = 16000
#: What turns the decoded signal into the model's rate; part of every audio encoder's fingerprint.
RESAMPLER = {
    "resampler": "soxr",
    "soxr_version": soxr.__version__,
    "quality": "HQ",
    "libsndfile": sf.__libsndfile_version__,
    "mixdown": "mean",
}
# A short read within this tolerance of the header's frame count is accepted: MP3 headers without a
# Xing/Info tag only *estimate* the length from the file size.
_SHORT_READ_TOLERANCE = 0.01
_SHORT_READ_MIN_FRAMES = 2 * 1152  # two MPEG-1 Layer III frames


class AudioError(RuntimeError):
    """An audio file is missing, unreadable, corrupt, empty or non-finite.

    Attributes
    ----------
    path : Path
        The offending file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # keep it picklable across process-pool boundaries
        return (type(self), (self.path, self.reason))


def _riff_truncation(path: Path, file_size: int) -> str | None:
    """Reason string if a RIFF/WAVE file's ``data`` chunk is longer than the file, else ``None``.

    libsndfile reads such a truncated WAV without error (it just clips the frame count), so the check is
    done here from the chunk headers. Streaming placeholders (size 0 or 0xFFFFFFFF) are not truncation.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        offset = 12
        while offset + 8 <= file_size:
            f.seek(offset)
            chunk = f.read(8)
            if len(chunk) < 8:
                return None
            chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                if size in (0, 0xFFFFFFFF):
                    return None
                available = file_size - offset - 8
                if size > available:
                    return f"truncated WAV: data chunk declares {size} bytes but only {available} are present"
                return None
            offset += 8 + size + (size & 1)
    return None


def load_audio(path: str | os.PathLike, *, sample_rate: int = DEFAULT_SAMPLE_RATE) -> np.ndarray:
    """Read an audio file as a mono float32 signal at ``sample_rate``.

    Parameters
    ----------
    path : path
        WAV, FLAC, OGG or MP3 file (anything libsndfile decodes).
    sample_rate : int
        Target rate in Hz; the signal is resampled with soxr (HQ) when the file's rate differs.

    Returns
    -------
    ndarray (n_samples,) float32
        Channels are averaged (mixdown), values in the file's own scale (about [-1, 1]).

    Raises
    ------
    AudioError
        The file is missing, not a decodable audio file, truncated, holds zero samples, or holds
        non-finite samples. The message names the path and the reason.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    try:
        file_size = path.stat().st_size
    except FileNotFoundError:
        raise AudioError(path, "file not found") from None
    except OSError as exc:
        raise AudioError(path, f"cannot stat file: {exc}") from exc
    if not path.is_file():
        raise AudioError(path, "not a regular file")
    if file_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    truncated = _riff_truncation(path, file_size)
    if truncated:
        raise AudioError(path, truncated)
    try:
        with sf.SoundFile(path) as f:
            declared, native_rate = f.frames, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise AudioError(path, f"cannot decode audio: {exc}") from exc
    n_frames = data.shape[0]
    if n_frames == 0:
        raise AudioError(path, "no audio samples (zero frames)")
    if n_frames < declared - max(_SHORT_READ_MIN_FRAMES, _SHORT_READ_TOLERANCE * declared):
        raise AudioError(path, f"truncated or corrupt: decoded {n_frames} of {declared} frames in the header")
    signal = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    n_bad = int(np.count_nonzero(~np.isfinite(signal)))
    if n_bad:
        what = "all samples are" if n_bad == signal.size else f"{n_bad} of {signal.size} samples are"
        raise AudioError(path, f"{what} NaN or infinite")
    if native_rate != sample_rate:
        signal = soxr.resample(signal, native_rate, sample_rate, quality=RESAMPLER["quality"])
    return np.ascontiguousarray(signal, dtype=np.float32)
