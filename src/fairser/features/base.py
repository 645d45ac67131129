"""The encoder protocol shared by every frozen feature encoder (the registry that builds them by name is
:mod:`fairser.features.registry`).

An encoder is a frozen function from an utterance (audio signal or transcript) to a fixed-size vector
(METHODS.md §4, "frozen encoder + trainable head"). Every encoder exposes ``name``, ``dim`` and
``fingerprint()``: a hash of everything that changes its output (encoder name, library versions, feature
set, sample rate, options). The feature cache keys every entry by that fingerprint, so changing any of it
re-extracts instead of serving stale features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

__all__ = ["AudioEncoder", "TextEncoder", "config_fingerprint"]


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
