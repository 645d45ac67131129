"""CREMA-D, the Crowd-sourced Emotional Multimodal Actors Dataset (Cao et al., IEEE TAFFC 2014).

Read as the authors distribute it: ``AudioWAV/AAAA_SSS_EEE_LL.wav`` (e.g. ``1001_DFA_ANG_XX.wav``) and
``VideoDemographics.csv`` (``ActorID, Age, Sex, Race, Ethnicity``) beside it:

- ``AAAA`` actor id (1001..1091),
- ``SSS`` one of 12 sentence codes (see :data:`SENTENCES`),
- ``EEE`` emotion: ANG anger, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad,
- ``LL`` emotion level: LO low, MD medium, HI high, XX unspecified.

Gender is the actor's ``Sex`` in the demographics table; age, race and ethnicity are kept as extras.
``.wav`` and ``.flac`` files are accepted. CREMA-D has no official split.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, ImportResult, find_audio_files, finish
from fairser.data.manifest import ManifestError

__all__ = ["DEMOGRAPHICS_FILE", "EMOTION_CODES", "SENTENCES", "load_crema_d", "read_demographics"]

CORPUS = "crema_d"
DEMOGRAPHICS_FILE = "VideoDemographics.csv"
DEMOGRAPHICS_COLUMNS = ("ActorID", "Age", "Sex", "Race", "Ethnicity")
#: Sentence code -> sentence (CREMA-D documentation).
SENTENCES: dict[str, str] = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slippery",
    "WSI": "We'll stop in a couple of minutes",
}
#: Emotion code -> the corpus's emotion name.
EMOTION_CODES: dict[str, str] = {
    "ANG": "anger",
    "DIS": "disgust",
    "FEA": "fear",
    "HAP": "happy",
    "NEU": "neutral",
    "SAD": "sad",
}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})$")
EXTRAS = ("sentence_code", "emotion_level", "age", "race", "ethnicity")


def _find_demographics(root: Path) -> Path:
    for candidate in (root / DEMOGRAPHICS_FILE, root.parent / DEMOGRAPHICS_FILE):
        if candidate.is_file():
            return candidate
    found = sorted(root.rglob(DEMOGRAPHICS_FILE))
    if found:
        return found[0]
    raise ManifestError(
        f"{CORPUS}: {DEMOGRAPHICS_FILE} not found in {root}, its parent or below; pass demographics=<path>"
    )


def read_demographics(path: str | Path) -> pd.DataFrame:
    """Read ``VideoDemographics.csv``, indexed by ``ActorID`` (string), with ``gender`` normalised from ``Sex``."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{CORPUS}: demographics file not found: {path}")
    demo = pd.read_csv(path, dtype=str, keep_default_na=False)
    demo.columns = [c.strip() for c in demo.columns]
    missing = [c for c in DEMOGRAPHICS_COLUMNS if c not in demo.columns]
    if missing:
        raise ManifestError(f"{path}: missing column(s) {missing}; expected {list(DEMOGRAPHICS_COLUMNS)}")
    demo["ActorID"] = demo["ActorID"].str.strip()
    dup = demo["ActorID"].duplicated(keep=False)
    if dup.any():
        raise ManifestError(f"{path}: duplicate ActorID(s) {sorted(set(demo.loc[dup, 'ActorID']))}")
    sex = demo["Sex"].str.strip().str.lower()
    bad = ~sex.isin(["male", "female"])
    if bad.any():
        rows = ", ".join(
            f"ActorID {a}: {s!r}" for a, s in zip(demo.loc[bad, "ActorID"], demo.loc[bad, "Sex"], strict=True)
        )
        raise ManifestError(f"{path}: Sex must be Male or Female, got {rows}")
    demo["gender"] = sex
    return demo.set_index("ActorID")


def load_crema_d(
    path: str | Path, *, strict: bool = True, demographics: str | Path | None = None
) -> ImportResult:
    """Read CREMA-D from its folder (file-name convention and demographics table of Cao et al. 2014).

    Parameters
    ----------
    path : path
        The CREMA-D folder (the repository root or its ``AudioWAV/``); searched recursively for audio.
    strict : bool
        If true, a badly named file or an actor missing from the demographics table is an error naming the
        files; if false those files are dropped and counted.
    demographics : path, optional
        ``VideoDemographics.csv``; by default looked up in ``path``, its parent, then below ``path``.

    Returns
    -------
    ImportResult
        Emotions in CREMA-D's own names (anger, disgust, fear, happy, neutral, sad); extras ``sentence_code``,
        ``emotion_level``, ``age``, ``race``, ``ethnicity``; ``split`` is ``train`` for every row.
    """
    root = Path(path)
    demo_path = Path(demographics) if demographics is not None else _find_demographics(root)
    demo = read_demographics(demo_path)
    drops = DropLog(corpus=CORPUS, strict=strict)
    rows = []
    for f in find_audio_files(root):
        m = _NAME.match(f.stem)
        if m is None:
            drops.add(
                f, "file name does not follow the CREMA-D convention", "expected e.g. 1001_DFA_ANG_XX.wav"
            )
            continue
        actor, sent, emo, level = m["actor"], m["sentence"], m["emotion"], m["level"]
        if emo not in EMOTION_CODES:
            drops.add(f, "unknown emotion code in file name", f"{emo!r} not in {sorted(EMOTION_CODES)}")
            continue
        if sent not in SENTENCES:
            drops.add(f, "unknown sentence code in file name", f"{sent!r} not in {sorted(SENTENCES)}")
            continue
        if level not in LEVELS:
            drops.add(f, "unknown emotion level in file name", f"{level!r} not in {sorted(LEVELS)}")
            continue
        if actor not in demo.index:
            drops.add(f, f"actor missing from {DEMOGRAPHICS_FILE}", f"ActorID {actor} not in {demo_path}")
            continue
        info = demo.loc[actor]
        rows.append(
            {
                "id": f"{CORPUS}_{f.stem}",
                "audio_path": str(f.absolute()),
                "transcript": SENTENCES[sent],
                "emotion": EMOTION_CODES[emo],
                "gender": info["gender"],
                "language": "en",
                "speaker": f"{CORPUS}_{actor}",
                "corpus": CORPUS,
                "split": "train",
                "sentence_code": sent,
                "emotion_level": LEVELS[level],
                "age": info["Age"],
                "race": info["Race"],
                "ethnicity": info["Ethnicity"],
            }
        )
    drops.check()
    if not rows:
        raise ManifestError(
            f"{CORPUS}: no usable audio files (.wav/.flac named like 1001_DFA_ANG_XX.wav) under {root}"
        )
    return ImportResult(
        manifest=finish(pd.DataFrame(rows), extras=EXTRAS, source=f"{CORPUS} ({root})"),
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=CORPUS,
        notes=[
            f"demographics from {demo_path}",
            "CREMA-D has no official split: split is 'train' until one is assigned",
        ],
    )
