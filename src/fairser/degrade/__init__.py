"""Degradations as data (METHODS.md §6, robustness): legacy codecs, the telephone channel, band-limiting and
resampling, additive noise and neural codecs, each a seeded, measured condition whose features are cached
like any other.

Typical use::

    from fairser.degrade import build_condition, extract_degraded_features

    feats = extract_degraded_features(
        paths=paths, condition=build_condition("mp3", bitrate_kbps=16), encoder=encoder, cache=cache, seed=0
    )
    feats.features, feats.measure("bitrate_kbps")
"""

from fairser.degrade.base import MEASURES, Condition, condition_fingerprint, file_rng
from fairser.degrade.extract import (
    DegradedFeatures,
    degrade_file,
    degraded_fingerprints,
    extract_degraded_features,
)
from fairser.degrade.registry import (
    CONDITIONS,
    PRESETS,
    build_condition,
    build_conditions,
    condition_label,
    parse_condition,
)
from fairser.degrade.waveforms import DegradedAudio, degraded_audio_fingerprints, extract_degraded_audio

__all__ = [
    "CONDITIONS",
    "MEASURES",
    "PRESETS",
    "Condition",
    "DegradedAudio",
    "DegradedFeatures",
    "build_condition",
    "build_conditions",
    "condition_fingerprint",
    "condition_label",
    "degrade_file",
    "degraded_audio_fingerprints",
    "degraded_fingerprints",
    "extract_degraded_audio",
    "extract_degraded_features",
    "file_rng",
    "parse_condition",
]
