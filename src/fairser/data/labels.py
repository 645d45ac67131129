"""Label sets and declared label maps (METHODS.md §5).

Each corpus keeps its own label names; a declared mapping turns them into a target set. Unmapped labels are
dropped and counted, never guessed.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

__all__ = ["CORE4", "MELD_EMOTIONS", "apply_label_map"]

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
