"""Linear gender probe: how much gender a learned embedding still holds (e.g. after CFA or adversarial
removal; Upadhyay, Chien & Lee 2025 report that it should fall towards chance)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["ProbeResult", "gender_probe"]


@dataclass(frozen=True)
class ProbeResult:
    """Cross-validated probe scores; ``chance`` is the majority-gender rate (the accuracy of no information).

    ``reason`` says why the scores are NaN when the probe could not be fitted.
    """

    accuracy: float
    balanced_accuracy: float
    chance: float
    n: int
    n_speakers: int
    n_splits: int
    reason: str = ""

    def as_dict(self, prefix: str = "") -> dict[str, float | int | str]:
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}


def gender_probe(
    *,
    embedding: np.ndarray,
    gender: np.ndarray,
    speaker: np.ndarray,
    n_splits: int = 5,
    seed: int = 0,
    C: float = 1.0,
) -> ProbeResult:
    """Speaker-independent cross-validated logistic-regression probe for gender on ``embedding``.

    Folds are :class:`~sklearn.model_selection.StratifiedGroupKFold` by speaker (no speaker in both the
    probe's training and test folds, so it cannot recognise voices), ``min(n_splits, speakers of the rarer
    gender)`` of them; features are standardised inside each fold. Rows with unknown gender (< 0) are left
    out. Fewer than two speakers of either gender gives NaN scores with a reason.
    """
    embedding = np.asarray(embedding, dtype=float)
    gender, speaker = np.asarray(gender), np.asarray(speaker)
    if not embedding.shape[0] == gender.shape[0] == speaker.shape[0]:
        raise ValueError(
            f"gender_probe: embedding ({embedding.shape[0]}), gender ({gender.shape[0]}) and speaker "
            f"({speaker.shape[0]}) must have one row each"
        )
    keep = gender >= 0
    x, g, s = embedding[keep], gender[keep].astype(int), speaker[keep]
    n_spk = {c: np.unique(s[g == c]).size for c in (0, 1)}
    n_speakers = int(np.unique(s).size)
    chance = float(max(np.mean(g == 0), np.mean(g == 1))) if g.size else float("nan")
    k = int(min(n_splits, n_spk[0], n_spk[1]))
    if k < 2:
        return ProbeResult(
            float("nan"),
            float("nan"),
            chance,
            int(g.size),
            n_speakers,
            0,
            reason=f"needs >= 2 speakers of each gender; has {n_spk[0]} male, {n_spk[1]} female",
        )
    pred = np.empty_like(g)
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    for train, test in splitter.split(x, g, s):
        if np.unique(g[train]).size < 2:
            pred[test] = g[train][0]
            continue
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        pred[test] = clf.fit(x[train], g[train]).predict(x[test])
    return ProbeResult(
        float(accuracy_score(g, pred)),
        float(balanced_accuracy_score(g, pred)),
        chance,
        int(g.size),
        n_speakers,
        k,
    )
