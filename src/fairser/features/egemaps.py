"""openSMILE eGeMAPS functionals: the standard 88-dimensional affective-computing feature set.

Eyben et al. (2016), "The Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and
Affective Computing", IEEE Trans. Affective Computing; extracted with audEERING's ``opensmile`` package
(eGeMAPSv02, functionals level).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import opensmile

from fairser.features.audio import DEFAULT_SAMPLE_RATE, RESAMPLER, load_audio
from fairser.features.base import config_fingerprint

__all__ = ["EgemapsEncoder"]

# openSMILE converts float input to int16 by multiplying by 32768 without clipping, so a sample at +1.0
# (possible after resampling overshoot) would wrap around to -32768. Clip just inside the int16 range.
_INT16_MAX = 32767 / 32768


class EgemapsEncoder:
    """eGeMAPS (or another openSMILE feature set) functionals of a whole utterance.

    Parameters
    ----------
    feature_set : str
        A member name of :class:`opensmile.FeatureSet`; default ``"eGeMAPSv02"`` (88 functionals).
    feature_level : str
        A member name of :class:`opensmile.FeatureLevel`; only ``"Functionals"`` gives one vector per
        utterance, which is what the cache stores.
    sample_rate : int
        Rate the signal is resampled to before extraction (16 kHz, as in the eGeMAPS paper's corpora).

    Notes
    -----
    The :class:`opensmile.Smile` object is built lazily, once per process (worker processes each build
    their own), and is dropped when the encoder is pickled.
    """

    name = "egemaps"

    def __init__(
        self,
        *,
        feature_set: str = "eGeMAPSv02",
        feature_level: str = "Functionals",
        sample_rate: int = DEFAULT_SAMPLE_RATE,
    ) -> None:
        if feature_set not in opensmile.FeatureSet.__members__:
            known = ", ".join(opensmile.FeatureSet.__members__)
            raise ValueError(f"unknown openSMILE feature_set {feature_set!r}; known: {known}")
        if feature_level != "Functionals":
            raise ValueError(
                f"feature_level must be 'Functionals' (one vector per utterance), got {feature_level!r}"
            )
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        self.feature_set = feature_set
        self.feature_level = feature_level
        self.sample_rate = int(sample_rate)
        self._smile: opensmile.Smile | None = None
        self._smile_pid: int | None = None

    def __repr__(self) -> str:
        return f"EgemapsEncoder(feature_set={self.feature_set!r}, sample_rate={self.sample_rate})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_smile"] = state["_smile_pid"] = None
        return state

    @property
    def smile(self) -> opensmile.Smile:
        """This process's openSMILE extractor (built on first use)."""
        if self._smile is None or self._smile_pid != os.getpid():
            self._smile = opensmile.Smile(
                feature_set=opensmile.FeatureSet[self.feature_set],
                feature_level=opensmile.FeatureLevel[self.feature_level],
            )
            self._smile_pid = os.getpid()
        return self._smile

    @property
    def dim(self) -> int:
        """Number of features (88 for eGeMAPSv02)."""
        return len(self.smile.feature_names)

    @property
    def feature_names(self) -> list[str]:
        """openSMILE's names of the features, in output order."""
        return list(self.smile.feature_names)

    def config(self) -> dict[str, Any]:
        """Everything that determines the output."""
        return {
            "encoder": self.name,
            "opensmile_version": opensmile.__version__,
            "feature_set": self.feature_set,
            "feature_level": self.feature_level,
            "sample_rate": self.sample_rate,
            "clip_to_int16": True,
            "loader": RESAMPLER,
        }

    def fingerprint(self) -> str:
        """sha256 of :meth:`config`."""
        return config_fingerprint(self.config())

    def encode_signal(self, signal: np.ndarray, *, sample_rate: int) -> np.ndarray:
        """Functionals of a mono float signal, as a ``(dim,)`` float32 vector.

        May contain NaN when openSMILE finds the segment too short; callers treat that as a failure.
        """
        if sample_rate != self.sample_rate:
            raise ValueError(f"{self!r} expects {self.sample_rate} Hz input, got {sample_rate} Hz")
        signal = np.clip(np.asarray(signal, dtype=np.float32), -1.0, _INT16_MAX)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Segment too short")
            # Smile.__call__ runs the same extraction as process_signal minus building a DataFrame
            # (~3% faster per file); the result is (channels, features, frames) = (1, dim, 1).
            values = self.smile(signal[np.newaxis, :], sample_rate)
        return np.asarray(values, dtype=np.float32).reshape(-1)

    def encode_file(self, path: str | os.PathLike) -> np.ndarray:
        """Load ``path`` with :func:`~fairser.features.audio.load_audio` (decoded once) and encode it."""
        return self.encode_signal(
            load_audio(path, sample_rate=self.sample_rate), sample_rate=self.sample_rate
        )
