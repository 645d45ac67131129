"""EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al., Interspeech 2005).

Read as the authors distribute it: one audio file per utterance named ``SSTTTEV.wav``, e.g. ``03a01Fa.wav``:

- ``SS`` speaker (03, 08, 09, 10, 11, 12, 13, 14, 15, 16),
- ``TTT`` text code (a01, a02, a04, a05, a07, b01, b02, b03, b09, b10),
- ``E`` emotion, the German initial: W Wut (anger), L Langeweile (boredom), E Ekel (disgust), A Angst (fear),
  F Freude (happiness), T Trauer (sadness), N neutral,
- ``V`` version letter (a, b, ...).

Speaker genders and the ten sentences are those of the EmoDB documentation. The folder is searched
recursively for ``.wav`` (original release) and ``.flac`` files. EmoDB has no official split.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from fairser.data.corpora._common import DropLog, ImportResult, find_audio_files, finish
from fairser.data.manifest import ManifestError

__all__ = ["EMOTION_CODES", "SPEAKER_GENDER", "TEXTS", "load_emodb"]

CORPUS = "emodb"
#: Emotion letter (German initial) -> the corpus's emotion name.
EMOTION_CODES: dict[str, str] = {
    "W": "anger",  # Wut
    "L": "boredom",  # Langeweile
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happiness",  # Freude
    "T": "sadness",  # Trauer
    "N": "neutral",
}
#: Speaker code -> gender (EmoDB documentation: 5 male, 5 female actors).
SPEAKER_GENDER: dict[str, str] = {
    **{s: "male" for s in ("03", "10", "11", "12", "15")},
    **{s: "female" for s in ("08", "09", "13", "14", "16")},
}
#: Text code -> sentence (EmoDB documentation).
TEXTS: dict[str, str] = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute Abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[A-Za-z])(?P<version>[a-z])$")
EXTRAS = ("emotion_code", "text_id", "version")


def load_emodb(path: str | Path, *, strict: bool = True) -> ImportResult:
    """Read EmoDB from its folder (file-name convention of Burkhardt et al. 2005).

    Parameters
    ----------
    path : path
        The EmoDB folder (e.g. the release's root, or its ``wav/`` folder); searched recursively.
    strict : bool
        If true, any audio file whose name breaks the convention (unknown speaker, text or emotion code) is an
        error naming the files; if false such files are dropped and counted in the result.

    Returns
    -------
    ImportResult
        Emotions in EmoDB's own names (anger, boredom, disgust, fear, happiness, sadness, neutral), extras
        ``emotion_code``, ``text_id``, ``version``; ``split`` is ``train`` for every row (no official split).
    """
    root = Path(path)
    drops = DropLog(corpus=CORPUS, strict=strict)
    rows = []
    for f in find_audio_files(root):
        m = _NAME.match(f.stem)
        if m is None:
            drops.add(f, "file name does not follow the EmoDB convention", "expected e.g. 03a01Fa.wav")
            continue
        spk, text, emo, version = m["speaker"], m["text"], m["emotion"], m["version"]
        if emo not in EMOTION_CODES:
            drops.add(f, "unknown emotion code in file name", f"{emo!r} not in {sorted(EMOTION_CODES)}")
            continue
        if spk not in SPEAKER_GENDER:
            drops.add(f, "unknown speaker code in file name", f"{spk!r} not in {sorted(SPEAKER_GENDER)}")
            continue
        if text not in TEXTS:
            drops.add(f, "unknown text code in file name", f"{text!r} not in {sorted(TEXTS)}")
            continue
        rows.append(
            {
                "id": f"{CORPUS}_{f.stem}",
                "audio_path": str(f.absolute()),
                "transcript": TEXTS[text],
                "emotion": EMOTION_CODES[emo],
                "gender": SPEAKER_GENDER[spk],
                "language": "de",
                "speaker": f"{CORPUS}_{spk}",
                "corpus": CORPUS,
                "split": "train",
                "emotion_code": emo,
                "text_id": text,
                "version": version,
            }
        )
    drops.check()
    if not rows:
        raise ManifestError(
            f"{CORPUS}: no usable audio files (.wav/.flac named like 03a01Fa.wav) under {root}"
        )
    df = finish(pd.DataFrame(rows), extras=EXTRAS, source=f"{CORPUS} ({root})")
    return ImportResult(
        manifest=df,
        dropped=drops.counts(),
        dropped_rows=drops.frame(),
        corpus=CORPUS,
        notes=["EmoDB has no official split: split is 'train' until one is assigned"],
    )
