"""The encoder protocol shared by every frozen feature encoder, and the registry that builds them by name.

An encoder is a frozen function from an utterance (audio signal or transcript) to a fixed-size vector
(METHODS.md §4, "frozen encoder + trainable head"). Every encoder exposes ``name``, ``dim`` and
``fingerprint()``: a hash of everything that changes its output (encoder name, library versions, feature
set, sample rate, options). The feature cache keys every entry by that fingerprint, so changing any of it
re-extracts instead of serving stale features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = [
    "AUDIO_ENCODERS",
    "TEXT_ENCODERS",
    "AudioEncoder",
    "TextEncoder",
    "build_audio_encoder",
    "build_text_encoder",
    "config_fingerprint",
]


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 (hex) of a JSON-serialisable configuration, independent of key order."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@runtime_checkable
class AudioEncoder(Protocol):
    """Maps one mono signal at ``sample_rate`` Hz to a ``(dim,)`` float32 vector.

    Must be picklable (it is sent to worker processes); heavy state (e.g. an openSMILE instance) is built
    lazily, once per process, and left out of the pickle.
    """

    name: str
    sample_rate: int

    @property
    def dim(self) -> int: ...

    def config(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...

    def encode_signal(self, signal: np.ndarray, *, sample_rate: int) -> np.ndarray: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Maps a batch of transcripts to an ``(n, dim)`` float32 array."""

    name: str

    @property
    def dim(self) -> int: ...

    def config(self) -> dict[str, Any]: ...

    def fingerprint(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _egemaps(**options: Any) -> AudioEncoder:
    from fairser.features.egemaps import EgemapsEncoder

    return EgemapsEncoder(**options)


def _e5(**options: Any) -> TextEncoder:
    from fairser.features.text import E5TextEncoder

    return E5TextEncoder(**options)


def _tfidf(**options: Any) -> TextEncoder:
    from fairser.features.text import TfidfTextEncoder

    return TfidfTextEncoder(**options)


#: Audio encoder builders by name (imports are deferred so that listing names stays cheap).
AUDIO_ENCODERS: dict[str, Callable[..., AudioEncoder]] = {"egemaps": _egemaps}
#: Text encoder builders by name.
TEXT_ENCODERS: dict[str, Callable[..., TextEncoder]] = {"e5": _e5, "tfidf": _tfidf}


def _build(kind: str, registry: Mapping[str, Callable[..., Any]], name: str, options: dict[str, Any]) -> Any:
    try:
        builder = registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} encoder {name!r}; known: {', '.join(sorted(registry))}") from None
    return builder(**options)


def build_audio_encoder(name: str, **options: Any) -> AudioEncoder:
    """Build an audio encoder by name (``"egemaps"``), passing ``options`` to its constructor."""
    return _build("audio", AUDIO_ENCODERS, name, options)


def build_text_encoder(name: str, **options: Any) -> TextEncoder:
    """Build a text encoder by name (``"e5"``, ``"tfidf"``), passing ``options`` to its constructor.

    A ``"tfidf"`` encoder comes back unfitted: call ``.fit(train_texts)`` before encoding.
    """
    return _build("text", TEXT_ENCODERS, name, options)
