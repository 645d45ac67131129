"""A tiny voiced corpus built on the fly for the method-zoo tests: harmonic 'voices' whose F0 depends on the
speaker's gender (male ~115 Hz, female ~215 Hz) and, a little, on the emotion; loudness depends on the
emotion. Real WAV files and a manifest, so features, Praat and the benchmark runner all see real audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

__all__ = ["EMOTIONS", "harmonic_voice", "tiny_corpus"]

EMOTIONS = ("anger", "sadness", "neutral", "joy")
_SR = 16000


def harmonic_voice(f0: float, *, duration: float = 0.6, amp: float = 0.3, seed: int = 0) -> np.ndarray:
    """A voiced, vibrato-modulated harmonic complex at ``f0`` Hz (11 harmonics, 1/k amplitudes)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration * _SR)) / _SR
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 3 * t))) / _SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (x / np.abs(x).max() * amp + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def tiny_corpus(
    root: Path,
    *,
    corpora: tuple[tuple[str, str], ...] = (("a", "en"),),
    speakers_per_gender: int = 6,
    utterances: int = 2,
) -> Path:
    """Write WAVs and ``manifest.csv`` under ``root``; returns the manifest path.

    Speakers ``<corpus>_<m|f><i>`` go to train / valid / test by ``i % 3`` (speaker-independent, both genders
    in every split).
    """
    root = Path(root)
    rows = []
    for corpus, language in corpora:
        for gender, base in (("male", 115.0), ("female", 215.0)):
            for s in range(speakers_per_gender):
                speaker = f"{corpus}_{gender[0]}{s}"
                for e, emotion in enumerate(EMOTIONS):
                    for u in range(utterances):
                        path = root / "audio" / corpus / f"{speaker}_{emotion}_{u}.wav"
                        path.parent.mkdir(parents=True, exist_ok=True)
                        seed = (len(rows) * 7919) % 100_003
                        wave = harmonic_voice(base * (1 + 0.08 * e) + 4 * s, amp=0.08 + 0.14 * e, seed=seed)
                        sf.write(path, wave, _SR)
                        rows.append(
                            {
                                "id": path.stem,
                                "audio_path": str(path.relative_to(root)),
                                "transcript": "the same words every time",  # (audio+text needs one)
                                "emotion": emotion,
                                "gender": gender,
                                "language": language,
                                "speaker": speaker,
                                "corpus": corpus,
                                "split": ("train", "valid", "test")[s % 3],
                            }
                        )
    manifest = pd.DataFrame(rows)
    manifest.to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"
