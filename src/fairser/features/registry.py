"""Feature encoders by name: ``build_audio_encoder("egemaps")``, ``build_text_encoder("e5")``.

Each builder imports its encoder module when called, so listing the names stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fairser.features.base import AudioEncoder, TextEncoder

__all__ = ["AUDIO_ENCODERS", "TEXT_ENCODERS", "build_audio_encoder", "build_text_encoder"]


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
