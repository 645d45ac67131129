"""Manifests, corpus loaders, label maps, splits and the built-in synthetic corpus."""

from fairser.data.manifest import (
    GENDERS,
    MANIFEST_COLUMNS,
    SPLITS,
    ManifestError,
    read_manifest,
    resolve_audio_paths,
    validate_manifest,
    write_manifest,
)

__all__ = [
    "GENDERS",
    "MANIFEST_COLUMNS",
    "SPLITS",
    "ManifestError",
    "read_manifest",
    "resolve_audio_paths",
    "validate_manifest",
    "write_manifest",
]
