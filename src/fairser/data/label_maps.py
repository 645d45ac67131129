"""Declared label maps from each corpus's own emotion names to the project's target sets (METHODS.md §5).

Every map is written out in full: a corpus label mapped to ``None`` is dropped on purpose (e.g. EmoDB
*boredom*, RAVDESS *calm* have no counterpart among the 7 MELD emotions), and a label absent from a map is
dropped too — :func:`fairser.data.labels.apply_label_map` counts both, nothing is guessed.

Targets
-------
``meld7``
    The 7 MELD emotions (:data:`fairser.data.labels.MELD_EMOTIONS`), the ERM-MinMaxGAP label set.
``core4``
    The 4-class cross-corpus core anger / happiness / neutral / sadness (:data:`fairser.data.labels.CORE4`).
``original``
    Keep the corpus's own labels (identity map; nothing dropped).

The corpus's own label names are those written by the loaders in :mod:`fairser.data.corpora` (in English,
decoded from each corpus's documented codes: EmoDB's German initials, RAVDESS's numbers, CREMA-D's
three-letter codes).
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from fairser.data.labels import CORE4, MELD_EMOTIONS, apply_label_map

__all__ = [
    "CORPUS_LABELS",
    "LABEL_MAPS",
    "TARGETS",
    "apply_target",
    "get_label_map",
    "target_labels",
]

#: Target label sets by name (``original`` has no fixed set).
TARGETS: dict[str, tuple[str, ...] | None] = {"meld7": MELD_EMOTIONS, "core4": CORE4, "original": None}

#: Each corpus's own label vocabulary, as its loader writes it into ``emotion``.
CORPUS_LABELS: dict[str, tuple[str, ...]] = {
    # Burkhardt et al. (2005): W Wut, L Langeweile, E Ekel, A Angst, F Freude, T Trauer, N neutral.
    "emodb": ("anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"),
    # Livingstone & Russo (2018): emotion codes 01..08.
    "ravdess": ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"),
    # Cao et al. (2014): ANG, DIS, FEA, HAP, NEU, SAD.
    "crema_d": ("anger", "disgust", "fear", "happy", "neutral", "sad"),
    # Poria et al. (2019); MELD-ST (Chen et al. 2024) reuses MELD's labels.
    "meld": MELD_EMOTIONS,
    "meld_st": MELD_EMOTIONS,
}

_MELD_TO_CORE4: dict[str, str | None] = {
    "neutral": "neutral",
    "joy": "happiness",
    "sadness": "sadness",
    "anger": "anger",
    "surprise": None,
    "fear": None,
    "disgust": None,
}

#: ``LABEL_MAPS[corpus][target]``: corpus label -> target label, or ``None`` to drop.
LABEL_MAPS: dict[str, dict[str, dict[str, str | None]]] = {
    "emodb": {
        "meld7": {
            "anger": "anger",
            "boredom": None,
            "disgust": "disgust",
            "fear": "fear",
            "happiness": "joy",
            "sadness": "sadness",
            "neutral": "neutral",
        },
        "core4": {
            "anger": "anger",
            "boredom": None,
            "disgust": None,
            "fear": None,
            "happiness": "happiness",
            "sadness": "sadness",
            "neutral": "neutral",
        },
    },
    "ravdess": {
        "meld7": {
            "neutral": "neutral",
            "calm": None,
            "happy": "joy",
            "sad": "sadness",
            "angry": "anger",
            "fearful": "fear",
            "disgust": "disgust",
            "surprised": "surprise",
        },
        "core4": {
            "neutral": "neutral",
            "calm": None,
            "happy": "happiness",
            "sad": "sadness",
            "angry": "anger",
            "fearful": None,
            "disgust": None,
            "surprised": None,
        },
    },
    "crema_d": {
        "meld7": {
            "anger": "anger",
            "disgust": "disgust",
            "fear": "fear",
            "happy": "joy",
            "neutral": "neutral",
            "sad": "sadness",
        },
        "core4": {
            "anger": "anger",
            "disgust": None,
            "fear": None,
            "happy": "happiness",
            "neutral": "neutral",
            "sad": "sadness",
        },
    },
    "meld": {"meld7": {e: e for e in MELD_EMOTIONS}, "core4": dict(_MELD_TO_CORE4)},
    "meld_st": {"meld7": {e: e for e in MELD_EMOTIONS}, "core4": dict(_MELD_TO_CORE4)},
}


def target_labels(target: str) -> tuple[str, ...] | None:
    """The label set of a target (``None`` for ``original``)."""
    if target not in TARGETS:
        raise ValueError(f"unknown label target {target!r}; choose one of {sorted(TARGETS)}")
    return TARGETS[target]


def get_label_map(corpus: str, *, target: str) -> dict[str, str | None] | None:
    """The declared map of ``corpus`` onto ``target`` (``None`` for ``target='original'``).

    Raises
    ------
    KeyError
        When no map is declared for that corpus (e.g. a generic manifest: pass your own map).
    """
    target_labels(target)
    if target == "original":
        return None
    if corpus not in LABEL_MAPS:
        raise KeyError(
            f"no declared label map for corpus {corpus!r} (known: {sorted(LABEL_MAPS)}); pass label_map= explicitly"
        )
    return dict(LABEL_MAPS[corpus][target])


def apply_target(
    manifest: pd.DataFrame,
    *,
    corpus: str | None = None,
    target: str = "meld7",
    label_map: Mapping | None = None,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Map a manifest's ``emotion`` onto ``target``; returns the mapped table and drops per original label.

    ``label_map`` overrides the declared map of ``corpus``. Without either, labels already in the target set
    are kept unchanged and any other label is dropped (counted). ``target='original'`` keeps every label.
    """
    allowed = target_labels(target)
    if label_map is None and corpus is not None and corpus in LABEL_MAPS and allowed is not None:
        label_map = get_label_map(corpus, target=target)
    if label_map is None:
        if allowed is None:
            out = manifest.copy()
            if "emotion_original" not in out.columns:
                out["emotion_original"] = out["emotion"]
            return out.reset_index(drop=True), {}
        label_map = {lab: lab for lab in allowed}
    label_map = dict(label_map)
    if allowed is not None:
        bad = sorted({v for v in label_map.values() if v is not None and v not in allowed})
        if bad:
            raise ValueError(
                f"label map sends labels to {bad}, which are not in the {target!r} set {list(allowed)}"
            )
    return apply_label_map(manifest, mapping=label_map)
