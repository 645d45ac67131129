"""Label sets and declared label maps (METHODS.md §5).

Each corpus keeps its own label names; a declared mapping turns them into a target set. Unmapped labels are
dropped and counted, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

__all__ = ["CORE4", "LABEL_SYNONYMS", "MELD_EMOTIONS", "apply_label_map", "canonical_label", "synonym_map"]

#: The 7 MELD emotions, the target set of the ERM-MinMaxGAP benchmark (MELD-ST).
MELD_EMOTIONS: tuple[str, ...] = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
#: The 4-class common core used for cross-corpus work.
CORE4: tuple[str, ...] = ("anger", "happiness", "neutral", "sadness")


def apply_label_map(
    df: pd.DataFrame,
    *,
    mapping: Mapping[str, str | None],
    column: str = "emotion",
    keep_original: str = "emotion_original",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map a corpus's own labels onto a target set.

    Returns the mapped table (the original label kept in ``keep_original``) and a count of dropped rows per
    original label: labels mapped to ``None`` or absent from ``mapping`` are dropped, never guessed.
    """
    original = df[column].astype(str)
    mapped = original.map(lambda x: mapping.get(x))
    keep = mapped.notna()
    dropped = original[~keep].value_counts().to_dict()
    out = df.loc[keep].copy()
    out[keep_original] = original[keep]
    out[column] = mapped[keep].astype(str)
    return out.reset_index(drop=True), {str(k): int(v) for k, v in dropped.items()}


#: Common spellings of emotion labels across corpora -> one canonical name (the MELD name where MELD has the
#: emotion, else the usual English noun). Keys are compared lower-cased and stripped. A user's ``label_map``
#: extends this table (its entries win); a label found in neither is dropped and counted, never guessed.
LABEL_SYNONYMS: dict[str, str] = {
    # anger
    "anger": "anger",
    "angry": "anger",
    "ang": "anger",
    "mad": "anger",
    "annoyed": "anger",
    # joy (MELD's name; core4 calls it happiness)
    "joy": "joy",
    "happy": "joy",
    "happiness": "joy",
    "hap": "joy",
    "joyful": "joy",
    "glad": "joy",
    # sadness
    "sadness": "sadness",
    "sad": "sadness",
    # fear
    "fear": "fear",
    "fearful": "fear",
    "fea": "fear",
    "afraid": "fear",
    "scared": "fear",
    # surprise
    "surprise": "surprise",
    "surprised": "surprise",
    "sur": "surprise",
    # disgust
    "disgust": "disgust",
    "disgusted": "disgust",
    "dis": "disgust",
    # neutral
    "neutral": "neutral",
    "neu": "neutral",
    "neutrality": "neutral",
    # emotions with no MELD counterpart (kept under one name; dropped by meld7/core4 unless mapped)
    "calm": "calm",
    "boredom": "boredom",
    "bored": "boredom",
    "contempt": "contempt",
    "frustration": "frustration",
    "frustrated": "frustration",
    "excitement": "excitement",
    "excited": "excitement",
}

#: Canonical synonym names -> the ``core4`` label (``None``: no counterpart).
_CANONICAL_TO_CORE4: dict[str, str | None] = {
    "anger": "anger",
    "joy": "happiness",
    "sadness": "sadness",
    "neutral": "neutral",
}


def canonical_label(label: str) -> str | None:
    """The canonical name of a label spelling (:data:`LABEL_SYNONYMS`), or ``None`` when unknown."""
    return LABEL_SYNONYMS.get(str(label).strip().lower())


def synonym_map(labels: Iterable[str], *, target: str) -> dict[str, str | None]:
    """Map each spelling in ``labels`` onto ``target`` (``meld7`` or ``core4``) through :data:`LABEL_SYNONYMS`.

    A spelling whose emotion has no counterpart in the target (e.g. ``calm`` for meld7) maps to ``None``;
    an unknown spelling is left out (the caller drops and counts it as unknown).
    """
    out: dict[str, str | None] = {}
    for label in labels:
        canon = canonical_label(label)
        if canon is None:
            continue
        if target == "meld7":
            out[label] = canon if canon in MELD_EMOTIONS else None
        elif target == "core4":
            out[label] = _CANONICAL_TO_CORE4.get(canon)
        else:
            raise ValueError(f"synonym maps exist for targets meld7 and core4, not {target!r}")
    return out
