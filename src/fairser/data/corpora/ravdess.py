"""RAVDESS, the Ryerson Audio-Visual Database of Emotional Speech and Song (Livingstone & Russo, PLoS ONE 2018).

Read as the authors distribute it (``Actor_XX/`` folders of ``MM-VV-EE-II-SS-RR-AA.wav``), seven two-digit
fields:

- ``MM`` modality: 01 full audio-video, 02 video-only, 03 audio-only,
- ``VV`` vocal channel: 01 speech, 02 song,
- ``EE`` emotion: 01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust, 08 surprised,
- ``II`` intensity: 01 normal, 02 strong (there is no strong neutral),
- ``SS`` statement: 01 "Kids are talking by the door", 02 "Dogs are sitting by the door",
- ``RR`` repetition: 01 or 02,
- ``AA`` actor: 01..24; odd-numbered actors are male, even-numbered female.

``.wav`` and ``.flac`` files are accepted. RAVDESS has no official split.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, ImportResult, find_audio_files, finish
from fairser.data.manifest import ManifestError

__all__ = ["EMOTION_CODES", "STATEMENTS", "load_ravdess"]

CORPUS = "ravdess"
MODALITIES = {"01": "audio-video", "02": "video-only", "03": "audio-only"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
#: Emotion code -> the corpus's emotion name.
EMOTION_CODES: dict[str, str] = {
    "01": "neutral",
    "02": "calm",
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fearful",
    "07": "disgust",
    "08": "surprised",
}
INTENSITIES = {"01": "normal", "02": "strong"}
#: Statement code -> sentence.
STATEMENTS: dict[str, str] = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
REPETITIONS = ("01", "02")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})$")
EXTRAS = ("recording", "vocal_channel", "intensity", "statement", "repetition")


def load_ravdess(
    path: str | Path, *, strict: bool = True, vocal_channels: Iterable[str] = ("speech",)
) -> ImportResult:
    """Read RAVDESS from its folder (file-name convention of Livingstone & Russo 2018).

    Parameters
    ----------
    path : path
        The RAVDESS folder (holding ``Actor_01/`` .. ``Actor_24/``); searched recursively.
    strict : bool
        If true, a file whose name breaks the convention is an error naming it; if false it is dropped and
        counted.
    vocal_channels : iterable of {"speech", "song"}
        Which recordings to keep; sung files (channel 02) are left out by default and counted as dropped.

    Returns
    -------
    ImportResult
        Emotions in RAVDESS's own names; extras ``recording`` (the file's modality code), ``vocal_channel``, ``intensity``, ``statement``,
        ``repetition``; ``split`` is ``train`` for every row (no official split).
    """
    keep_channels = set(vocal_channels)
    unknown = keep_channels - set(VOCAL_CHANNELS.values())
    if unknown:
        raise ValueError(
            f"unknown vocal channel(s) {sorted(unknown)}; choose from {sorted(VOCAL_CHANNELS.values())}"
        )
    root = Path(path)
    drops = DropLog(corpus=CORPUS, strict=strict)
    skipped = DropLog(corpus=CORPUS, strict=False)
    rows = []
    for f in find_audio_files(root):
        m = _NAME.match(f.stem)
        if m is None:
            drops.add(
                f,
                "file name does not follow the RAVDESS convention",
                "expected e.g. 03-01-06-01-02-01-12.wav",
            )
            continue
        mod, chan, emo, inten, stmt, rep, actor = m.groups()
        problems = [
            (mod, MODALITIES, "modality"),
            (chan, VOCAL_CHANNELS, "vocal channel"),
            (emo, EMOTION_CODES, "emotion"),
            (inten, INTENSITIES, "intensity"),
            (stmt, STATEMENTS, "statement"),
            (rep, REPETITIONS, "repetition"),
        ]
        bad = [(code, name, allowed) for code, allowed, name in problems if code not in allowed]
        if bad or actor == "00":
            code, name, allowed = bad[0] if bad else (actor, "actor", "01..24")
            allowed_txt = allowed if isinstance(allowed, str) else sorted(allowed)
            drops.add(f, f"unknown {name} code in file name", f"{code!r} not in {allowed_txt}")
            continue
        if VOCAL_CHANNELS[chan] not in keep_channels:
            skipped.add(
                f,
                f"vocal channel {VOCAL_CHANNELS[chan]!r} not selected (vocal_channels={sorted(keep_channels)})",
            )
            continue
        rows.append(
            {
                "id": f"{CORPUS}_{f.stem}",
                "audio_path": str(f.absolute()),
                "transcript": STATEMENTS[stmt],
                "emotion": EMOTION_CODES[emo],
                "gender": "male" if int(actor) % 2 == 1 else "female",
                "language": "en",
                "speaker": f"{CORPUS}_{actor}",
                "corpus": CORPUS,
                "split": "train",
                "recording": MODALITIES[mod],
                "vocal_channel": VOCAL_CHANNELS[chan],
                "intensity": INTENSITIES[inten],
                "statement": stmt,
                "repetition": rep,
            }
        )
    drops.check()
    drops.rows.extend(skipped.rows)
    if not rows:
        raise ManifestError(
            f"{CORPUS}: no usable audio files (.wav/.flac named like 03-01-06-01-02-01-12.wav) under {root}"
        )
    return ImportResult(
        manifest=finish(pd.DataFrame(rows), extras=EXTRAS, source=f"{CORPUS} ({root})"),
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=CORPUS,
        notes=["RAVDESS has no official split: split is 'train' until one is assigned"],
    )
