"""CO-VADA's data side (Tsai, Lin, Chou, Lee 2025): selection of bias-guiding samples and offline voice
conversion with Praat's "Change gender" (Boersma & Weenink, Praat; via ``praat-parselmouth``).

Converted audio is written next to the feature cache, named by the sha256 of the source file's bytes and
the conversion settings, so a second run reuses both the files and (through the content-addressed
:class:`~fairser.features.FeatureCache`) their features.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from fairser.features.audio import AudioError, load_audio
from fairser.features.cache import FeatureCache
from fairser.progress import progress_bar

if TYPE_CHECKING:  # parselmouth is imported where it is used: importing the objectives stays light
    import parselmouth

__all__ = [
    "FEMALE_TO_MALE",
    "MALE_TO_FEMALE",
    "ConvertedAudio",
    "VoiceShift",
    "change_gender",
    "convert_voices",
    "median_f0",
    "select_bias_guiding",
]

_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class VoiceShift:
    """Arguments of Praat's "Change gender" (Praat manual, "Sound: Change gender...").

    ``new_pitch_median`` (Hz) is the median F0 of the result; ``formant_shift_ratio`` scales the formants
    (vocal-tract length). ``pitch_floor``/``pitch_ceiling`` bound the pitch analysis (Hz).
    """

    new_pitch_median: float
    formant_shift_ratio: float
    pitch_floor: float = 75.0
    pitch_ceiling: float = 600.0
    pitch_range_factor: float = 1.0
    duration_factor: float = 1.0

    def key(self) -> str:
        """A file-name-safe description of the settings (part of a converted file's name; ``s`` = seeded)."""
        return (
            f"p{self.new_pitch_median:g}_f{self.formant_shift_ratio:g}_r{self.pitch_range_factor:g}"
            f"_d{self.duration_factor:g}_{self.pitch_floor:g}-{self.pitch_ceiling:g}_s"
        )


#: Towards a typical adult female voice: median F0 ~210 Hz and formants ~15% higher (shorter vocal tract);
#: adult female F0 averages ~200-220 Hz and formants ~15-20% above male ones (Peterson & Barney 1952).
MALE_TO_FEMALE = VoiceShift(new_pitch_median=210.0, formant_shift_ratio=1.15)
#: Towards a typical adult male voice: median F0 ~110 Hz and formants scaled by ~1/1.15 = 0.87.
FEMALE_TO_MALE = VoiceShift(new_pitch_median=110.0, formant_shift_ratio=0.87)


def median_f0(sound: parselmouth.Sound, *, pitch_floor: float = 75.0, pitch_ceiling: float = 600.0) -> float:
    """Median F0 (Hz) over the voiced frames of Praat's pitch track; NaN when no frame is voiced."""
    f0 = sound.to_pitch(pitch_floor=pitch_floor, pitch_ceiling=pitch_ceiling).selected_array["frequency"]
    voiced = f0[f0 > 0]
    return float(np.median(voiced)) if voiced.size else float("nan")


def change_gender(sound: parselmouth.Sound, *, shift: VoiceShift, seed: int | None = 0) -> parselmouth.Sound:
    """Praat's "Change gender" (PSOLA resynthesis with formant shift) applied to ``sound``.

    Praat draws random numbers inside this command (two calls on the same sound differ), so with ``seed``
    (default) Praat's generator is seeded first and set back to unpredictable seeding afterwards: the same
    input and seed give the same samples. ``seed=None`` leaves Praat's generator alone.
    """
    from parselmouth import praat
    from parselmouth.praat import call

    args = (
        shift.pitch_floor,
        shift.pitch_ceiling,
        shift.formant_shift_ratio,
        shift.new_pitch_median,
        shift.pitch_range_factor,
        shift.duration_factor,
    )
    if seed is None:
        return call(sound, "Change gender", *args)
    praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(seed)})")
    try:
        return call(sound, "Change gender", *args)
    finally:
        praat.run("random_initializeSafelyAndUnpredictably ()")


def select_bias_guiding(*, gce_losses: np.ndarray, correct: np.ndarray, top_k: float) -> np.ndarray:
    """CO-VADA's bias-guiding samples: of the samples the bias-capturing classifier gets right, the
    ``ceil(top_k * N)`` with the lowest GCE loss (fewer if fewer are right). Returns their indices, lowest
    loss first (ties broken by index)."""
    gce_losses = np.asarray(gce_losses, dtype=float)
    correct = np.asarray(correct, dtype=bool)
    if gce_losses.shape != correct.shape or gce_losses.ndim != 1:
        raise ValueError(
            f"select_bias_guiding: gce_losses {gce_losses.shape} and correct {correct.shape} must be equal 1-D"
        )
    if not 0 < top_k <= 1:
        raise ValueError(f"select_bias_guiding: top_k={top_k} must lie in (0, 1]")
    n_select = int(np.ceil(top_k * gce_losses.size))
    candidates = np.flatnonzero(correct & np.isfinite(gce_losses))
    order = candidates[np.lexsort((candidates, gce_losses[candidates]))]
    return order[:n_select]


@dataclass
class ConvertedAudio:
    """The result of :func:`convert_voices`, row-aligned with its ``sources``.

    ``paths[i]`` is the converted file (None when the source was skipped, with ``reasons[i]``);
    ``source_f0`` the source's median F0 (Hz); ``direction`` ``"up"`` (towards female), ``"down"`` or ``""``.
    """

    sources: tuple[Path, ...]
    paths: list[Path | None]
    source_f0: np.ndarray
    direction: list[str]
    reasons: dict[int, str] = field(default_factory=dict)
    n_converted: int = 0
    n_reused: int = 0


def _write_wav(sound: parselmouth.Sound, path: Path) -> None:
    import parselmouth

    peak = float(np.abs(sound.values).max()) if sound.values.size else 0.0
    if peak > 0.99:  # PSOLA can overshoot; 16-bit WAV would clip
        sound = sound.copy()
        sound.scale_peak(0.99)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".wav")
    os.close(fd)
    try:
        sound.save(tmp, parselmouth.SoundFileFormat.WAV)
        os.replace(tmp, path)  # atomic: concurrent runs converting the same file never see half a file
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def convert_voices(
    paths: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    direction: Literal["f0", "gender"] = "f0",
    genders: Sequence[str] | None = None,
    f0_threshold: float = 165.0,
    to_female: VoiceShift = MALE_TO_FEMALE,
    to_male: VoiceShift = FEMALE_TO_MALE,
    cache: FeatureCache | None = None,
    progress: bool = False,
) -> ConvertedAudio:
    """Convert each file's voice towards the other gender with Praat's "Change gender".

    Parameters
    ----------
    paths : sequence of path
        Source audio files.
    out_dir : path
        Where converted WAVs go (16 kHz, 16-bit), as ``<sha256 of source>_<settings>.wav``; an existing
        file is reused.
    direction : {"f0", "gender"}
        ``"f0"`` (default; needs no demographics, as CO-VADA): a source whose median F0 is below
        ``f0_threshold`` is shifted with ``to_female``, else with ``to_male``. ``"gender"``: by ``genders``
        (``male`` -> ``to_female``, ``female`` -> ``to_male``; other values are skipped).
    genders : sequence of str, optional
        Gender per path, for ``direction="gender"``.
    f0_threshold : float
        Hz; 165 Hz lies between typical adult male (~120 Hz) and female (~210 Hz) medians.
    cache : FeatureCache, optional
        Used only for its memoised file hashes.
    progress : bool
        Show a progress bar.
    """
    import parselmouth

    sources = tuple(Path(p) for p in paths)
    if direction not in ("f0", "gender"):
        raise ValueError(f"convert_voices: direction={direction!r} must be 'f0' or 'gender'")
    if direction == "gender" and (genders is None or len(genders) != len(sources)):
        raise ValueError("convert_voices: direction='gender' needs one gender per path")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hasher = cache or FeatureCache(out / ".hashes")
    hashes = hasher.file_hashes(sources)
    result = ConvertedAudio(
        sources=sources,
        paths=[None] * len(sources),
        source_f0=np.full(len(sources), np.nan),
        direction=[""] * len(sources),
    )
    with progress_bar(enabled=progress) as bar:
        task = bar.add_task("voice conversion (Praat)", total=len(sources))
        for i, src in enumerate(sources):
            bar.advance(task)
            if isinstance(hashes[i], OSError):
                result.reasons[i] = f"cannot read {src}: {hashes[i]}"
                continue
            try:
                signal = load_audio(src, sample_rate=_SAMPLE_RATE).astype(np.float64)
                sound = parselmouth.Sound(signal, sampling_frequency=_SAMPLE_RATE)
            except AudioError as exc:
                result.reasons[i] = exc.reason
                continue
            f0 = median_f0(sound)
            result.source_f0[i] = f0
            if direction == "f0":
                if not np.isfinite(f0):
                    result.reasons[i] = "no voiced frame: F0 unknown, direction undecided"
                    continue
                up = f0 < f0_threshold
            else:
                g = str(genders[i])
                if g not in ("male", "female"):
                    result.reasons[i] = f"gender {g!r}: direction undecided"
                    continue
                up = g == "male"
            shift = to_female if up else to_male
            target = out / f"{hashes[i][:32]}_{shift.key()}.wav"
            result.direction[i] = "up" if up else "down"
            result.paths[i] = target
            if target.is_file():
                result.n_reused += 1
                continue
            # seeded by the source's content: the same file always converts to the same bytes
            _write_wav(change_gender(sound, shift=shift, seed=int(hashes[i][:8], 16)), target)
            result.n_converted += 1
    return result
