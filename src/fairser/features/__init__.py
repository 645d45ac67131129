"""Frozen feature encoders, robust audio loading and the content-addressed feature cache (METHODS.md §4).

Typical use::

    from fairser.features import FeatureCache, build_audio_encoder, extract_audio_features

    feats = extract_audio_features(
        paths=manifest["audio_path"], encoder=build_audio_encoder("egemaps"), cache=FeatureCache(".cache")
    )
    X, ok = feats.features, feats.ok
"""

from fairser.features.audio import AudioError, load_audio
from fairser.features.base import AudioEncoder, TextEncoder, config_fingerprint
from fairser.features.cache import FeatureCache, sha256_file, sha256_text
from fairser.features.extract import AudioFeatures, extract_audio_features, extract_text_features
from fairser.features.registry import AUDIO_ENCODERS, TEXT_ENCODERS, build_audio_encoder, build_text_encoder

__all__ = [
    "AUDIO_ENCODERS",
    "TEXT_ENCODERS",
    "AudioEncoder",
    "AudioError",
    "AudioFeatures",
    "FeatureCache",
    "TextEncoder",
    "build_audio_encoder",
    "build_text_encoder",
    "config_fingerprint",
    "extract_audio_features",
    "extract_text_features",
    "load_audio",
    "sha256_file",
    "sha256_text",
]
